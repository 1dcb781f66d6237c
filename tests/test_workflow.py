"""docs/nightly.yml stays in step with the CLI: every `evalsuite` command in it parses."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
import yaml

from evalsuite.cli import app

WORKFLOW = Path(__file__).resolve().parent.parent / "docs" / "nightly.yml"


def _evalsuite_commands() -> list[list[str]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                line = line.strip()
                if not line.startswith("evalsuite "):
                    continue
                words = shlex.split(line.split(">>")[0])
                commands.append(words[1:])
    return commands


def _parse(args: list[str]):  # typer ships its own click: its Context and errors are typer._click's
    """Parse like the real CLI, down to the subcommand, without running anything."""
    command = typer.main.get_command(app)
    ctx = command.make_context("evalsuite", list(args), resilient_parsing=False)
    while hasattr(command, "get_command") and (remaining := [*ctx._protected_args, *ctx.args]):
        name, *rest = remaining
        command = command.get_command(ctx, name)
        assert command is not None, f"unknown evalsuite command {name!r}"
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return ctx


def test_workflow_is_valid_and_scheduled():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["schedule"][0]["cron"]  # PyYAML reads the `on:` key as True
    assert [c[0] for c in _evalsuite_commands()] == ["run", "compare", "history", "card"]


def test_every_evalsuite_command_in_the_workflow_parses():
    for args in _evalsuite_commands():
        ctx = _parse(args)
        assert ctx.command.name in {"run", "compare", "history", "update"}, args


def test_the_nightly_preset_exists_and_compare_uses_samples():
    run, compare, *_ = _evalsuite_commands()
    assert run[run.index("--preset") + 1] == "nightly" and "--log-samples" in run
    from evalsuite.suite import load_suite

    load_suite().preset("nightly")  # raises if the workflow names a preset the suite lacks
    assert "--format" in compare and compare[compare.index("--format") + 1] == "markdown"


def test_a_wrong_option_would_be_caught():
    try:
        _parse(["compare", "a", "b", "--no-such-option"])
    except Exception as e:  # typer._click.exceptions.NoSuchOption
        assert type(e).__name__ == "NoSuchOption"
        return
    raise AssertionError("the parser accepted an unknown option")
