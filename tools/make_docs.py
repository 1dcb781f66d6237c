"""Write docs/commands.md, the command reference, from the typer app (typer's own Markdown generator, as
`typer evalsuite.cli utils docs` runs it). `make docs` runs this; tests/test_docs.py fails while the file is stale.

    python tools/make_docs.py            # rewrite docs/commands.md
    python tools/make_docs.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

COMMANDS = Path(__file__).resolve().parent.parent / "docs" / "commands.md"
HEADER = (
    "<!-- Generated from evalsuite's typer app by tools/make_docs.py (make docs); do not edit by hand:\n"
    "     tests/test_docs.py fails while this file differs from what the CLI says. -->\n\n"
)


def commands_reference() -> str:
    import typer
    import typer.cli

    from evalsuite.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    ctx.ensure_object(dict)
    ctx.obj[typer.cli.MARKUP_MODE_KEY] = app.rich_markup_mode
    text = typer.cli.get_docs_for_click(obj=command, ctx=ctx, name="evalsuite", title="Command reference")
    # the shell-completion options typer adds to every app are not evalsuite's (typer's own CLI leaves them out)
    completion = ("* `--install-completion`", "* `--show-completion`")
    lines = [line for line in text.splitlines() if not line.startswith(completion)]
    return HEADER + "\n".join(lines).strip() + "\n"


if __name__ == "__main__":
    text = commands_reference()
    if "--check" in sys.argv[1:]:
        stale = not COMMANDS.is_file() or COMMANDS.read_text(encoding="utf-8") != text
        print(f"{COMMANDS} is {'stale: run make docs' if stale else 'current'}", file=sys.stderr)
        sys.exit(1 if stale else 0)
    COMMANDS.write_text(text, encoding="utf-8")
    print(f"wrote {COMMANDS}", file=sys.stderr)
