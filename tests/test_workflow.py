"""docs/nightly.yml stays in step with the CLI: every `evalsuite` command in it parses, and every results folder a
step reads is written or fetched by an earlier step of its job."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer
import yaml

from evalsuite.cli import app

WORKFLOW = Path(__file__).resolve().parent.parent / "docs" / "nightly.yml"
SWEEP_WORKFLOW = WORKFLOW.with_name("nightly-sweep.yml")  # its variant over a training run's checkpoints, on Ray


def _evalsuite_commands(path: Path = WORKFLOW) -> list[list[str]]:
    workflow = yaml.safe_load(path.read_text())
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
    assert [c[0] for c in _evalsuite_commands()] == ["run", "compare", "history", "card", "run"]


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


# --- every results folder a step reads comes from an earlier step

_DOWNLOADS = ("dawidd6/action-download-artifact", "actions/download-artifact")


def _folder(word: str, script: str) -> str:
    """The top folder a command-line word names: `results/x` -> results; `$var` or `$(ls -d dir/*/ ...)`
    -> the folder `ls` lists (the variable's assignment is looked up in the step's script)."""
    if word.startswith("$") and not word.startswith("$("):
        name = word.strip("${}")
        assignment = re.search(rf"^\s*{name}=(.*)$", script, re.M)
        assert assignment, f"no assignment of {word} in the step"
        word = assignment.group(1).strip()
    listed = re.search(r"ls -d (\S+?)[)\s]", word + " ")
    return (listed.group(1) if listed else word).strip("\"'").split("/")[0]


def _reads_and_writes(step: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The results folders a step reads and the ones it writes."""
    reads, writes = set(), set()
    uses, script = step.get("uses", ""), step.get("run", "")
    if uses.startswith(_DOWNLOADS):
        writes.add(step["with"]["path"].rstrip("/"))
    if uses.startswith("actions/upload-artifact"):
        reads.add(step["with"]["path"].rstrip("/").split("/")[0])
    for line in script.splitlines():
        line = line.strip()
        if not line.startswith("evalsuite "):
            continue
        words = shlex.split(line.split(">>")[0])[1:]
        command, args = words[0], words[1:]
        positional = [w for i, w in enumerate(args) if not w.startswith("-") and not args[i - 1].startswith("--")]
        if command in ("run", "sweep"):
            writes.add(args[args.index("--output-dir") + 1] if "--output-dir" in args else "results")
        elif command in ("compare", "leaderboard"):
            reads |= {_folder(w, script) for w in positional}
        elif command == "history":  # history MODEL [RESULTS_DIR ...]
            reads |= {_folder(w, script) for w in positional[1:]}
        elif command == "card" and "--results" in args:
            reads.add(_folder(args[args.index("--results") + 1], script))
    return reads, writes


def _unwritten_reads(workflow: dict[str, Any]) -> list[str]:
    problems = []
    for name, job in workflow["jobs"].items():
        written: set[str] = set()
        for step in job["steps"]:
            reads, writes = _reads_and_writes(step)
            problems += [f"{name}: step {step.get('name', step.get('uses'))!r} reads {r}/, which no earlier step "
                         "writes" for r in sorted(reads - written)]  # fmt: skip
            written |= writes
    return problems


def test_every_results_folder_a_step_reads_comes_from_an_earlier_step():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    reads = [r for job in workflow["jobs"].values() for step in job["steps"] for r in _reads_and_writes(step)[0]]
    assert {"results", "baseline", "full-run"} <= set(reads)  # the check sees the compare, history and card steps
    assert _unwritten_reads(workflow) == []


def test_a_step_reading_a_folder_nothing_wrote_is_caught():
    """The workflow as it was before: its last step read full-run/results.json, which no step made."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["h6"]
    job["steps"] = [s for s in job["steps"] if s.get("name") != "Fetch the last full run"]
    job["steps"][-1]["run"] = "evalsuite card update README.md --results full-run/results.json --check"
    assert _unwritten_reads(workflow) == [
        "h6: step 'README metrics are those of the last full run' reads full-run/, which no earlier step writes"
    ]


def test_the_sweep_variant_parses_and_reads_only_what_it_wrote():
    commands = _evalsuite_commands(SWEEP_WORKFLOW)
    assert [c[0] for c in commands] == ["sweep", "leaderboard", "history"]
    for args in commands:
        assert _parse(args).command.name in {"sweep", "leaderboard", "history"}, args
    sweep = commands[0]
    assert sweep[sweep.index("--preset") + 1] == "nightly" and "--models-file" in sweep
    assert _unwritten_reads(yaml.safe_load(SWEEP_WORKFLOW.read_text())) == []
