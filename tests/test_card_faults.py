"""No one's edit is overwritten, and every failure is one line, for `card update`:

- locally: a README someone changes between evalsuite's read and its write is updated again on the new text
  (twice: refused in one line, their text kept); a symlink loop, a read-only disk, an immutable file and a
  full disk are one line each, the README as it was;
- on the Hub (tests/fake_hub.py on loopback, the real huggingface_hub client): the push updates the Hub's own
  README (a co-author's edit made there is kept) on the revision it read (`parent_commit`); a Hub that moved on
  meanwhile is read again once, then refused in one line; 401 and 403 say to check the token; the local README
  changes only once the push succeeded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import SAKURA, fill
from fake_hub import FakeHub
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.publish import card_update

cli = CliRunner()
MINE = "---\nlicense: apache-2.0\n---\n# My model\n\nMy words.\n"
THEIRS = "\nA co-author's line, added while evalsuite was updating the card.\n"


def _update(readme: Path, *extra: str):
    return cli.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), *extra])


def test_a_readme_changed_underneath_is_updated_again_on_its_new_text(tmp_path: Path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    real = card_update.read_card_inputs
    reads = []

    def read_then_someone_appends(request, suite=None):
        inputs = real(request, suite)
        reads.append(1)
        if len(reads) == 1:  # after evalsuite read the README, before it writes
            with readme.open("a") as f:
                f.write(THEIRS)
        return inputs

    monkeypatch.setattr(card_update, "read_card_inputs", read_then_someone_appends)
    result = _update(readme)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert THEIRS in text and "<!-- evalsuite:start -->" in text and "My words." in text
    assert f"{readme} changed while evalsuite was updating it: updated again on its new text" in result.stderr
    assert len(reads) == 2


def test_a_readme_that_keeps_changing_is_refused_in_one_line_and_their_text_kept(tmp_path: Path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    real = card_update.read_card_inputs

    def read_then_someone_appends(request, suite=None):
        inputs = real(request, suite)
        with readme.open("a") as f:
            f.write(THEIRS)
        return inputs

    monkeypatch.setattr(card_update, "read_card_inputs", read_then_someone_appends)
    result = _update(readme)
    assert result.exit_code == 1
    assert result.stderr == f"error: {readme}: changed twice while evalsuite was updating it; nothing was written, " \
                            "run again\n"  # fmt: skip
    assert readme.read_text() == MINE + THEIRS + THEIRS  # every byte they wrote, none of ours


def test_a_symlink_loop_is_one_line(tmp_path: Path):
    (tmp_path / "README.md").symlink_to(tmp_path / "OTHER.md")
    (tmp_path / "OTHER.md").symlink_to(tmp_path / "README.md")
    result = _update(tmp_path / "README.md")
    assert (
        result.exit_code == 1
        and result.stderr == f"error: {tmp_path / 'README.md'}: a symlink loop; point it at a file\n"
    )


@pytest.fixture
def disk(tmpfs: Callable[[str], Path]) -> Path:
    """A tmpfs of the test's own (CI runs as root): made read-only, or full, without touching the machine's."""
    return tmpfs("64k")


@pytest.mark.subprocess
def test_a_read_only_disk_is_one_line_and_the_readme_stays(disk: Path):
    readme = disk / "README.md"
    readme.write_text(MINE)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = _update(readme)
    assert result.exit_code == 1
    assert result.stderr == f"error: {readme}: cannot write (Read-only file system); nothing was changed\n"
    assert readme.read_text() == MINE


@pytest.mark.subprocess
def test_a_full_disk_is_one_line_and_the_readme_stays(disk: Path):
    readme = disk / "README.md"
    readme.write_text(MINE)
    fill(disk)
    result = _update(readme)
    assert result.exit_code == 1
    assert result.stderr == f"error: {readme}: cannot write (No space left on device); nothing was changed\n"
    assert readme.read_text() == MINE and sorted(p.name for p in disk.iterdir()) == ["README.md", "filler"]


@pytest.mark.subprocess
def test_an_immutable_readme_is_one_line(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    if subprocess.run(["chattr", "+i", str(readme)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here (needs root and a file system that keeps the flag)")
    try:
        result = _update(readme)
    finally:
        subprocess.run(["chattr", "-i", str(readme)], capture_output=True)
    assert result.exit_code == 1
    assert result.stderr == f"error: {readme}: cannot write (Operation not permitted); nothing was changed\n"
    assert readme.read_text() == MINE


# --- the Hub


TOKEN = "hf_evalsuiteFakeToken0123456789abcdef"
EVALSUITE = str(Path(sys.executable).parent / "evalsuite")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    hub = FakeHub()
    with hub.serving():
        yield hub


def _publish(hub: FakeHub, text: str, folder: Path) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(text)
    return hub.publish_model("org/model", folder)


def _push(readme: Path, hub: FakeHub, home: Path, *extra: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": TOKEN}
    environment.pop("HF_HUB_OFFLINE", None)
    args = [EVALSUITE, "card", "update", str(readme), "--results", str(SAKURA), "--push", "org/model", *extra]
    return subprocess.run(args, capture_output=True, text=True, env=environment, timeout=300)


@pytest.mark.subprocess
def test_the_push_keeps_an_edit_made_on_the_hub_and_names_the_revision_it_read(hub: FakeHub, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    parent = _publish(hub, MINE + "\nEdited in the Hub's web editor.\n", tmp_path / "hub")  # not in the local file
    result = _push(readme, hub, tmp_path / "hf-home")
    assert result.returncode == 0, result.stderr[-3000:]
    (commit,) = hub.models["org/model"].commits
    assert commit["parent_commit"] == parent and commit["accepted"]
    pushed = commit["files"]["README.md"].decode()
    assert "Edited in the Hub's web editor." in pushed and "<!-- evalsuite:start -->" in pushed
    local = readme.read_text()  # updated too, on its own text, once the push succeeded
    assert "Edited in the Hub's web editor." not in local and "<!-- evalsuite:start -->" in local
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.subprocess
def test_a_hub_that_moves_on_during_the_push_is_read_again_once(hub: FakeHub, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    first = _publish(hub, MINE, tmp_path / "hub")

    def a_co_author_commits_first() -> None:
        if len(hub.models["org/model"].commits) == 0:
            _publish(hub, MINE + "\nMerged from a pull request.\n", tmp_path / "hub")

    hub.before_commit = a_co_author_commits_first
    result = _push(readme, hub, tmp_path / "hf-home")
    assert result.returncode == 0, result.stderr[-3000:]
    stale, made = hub.models["org/model"].commits
    assert stale["parent_commit"] == first and not stale["accepted"]
    assert made["accepted"] and made["parent_commit"] != first
    assert "Merged from a pull request." in made["files"]["README.md"].decode()
    assert "the Hub moved on while it was updated: made again on its new text" in result.stderr


@pytest.mark.subprocess
def test_a_hub_that_keeps_moving_is_refused_in_one_line_and_the_local_readme_stays(hub: FakeHub, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    _publish(hub, MINE, tmp_path / "hub")
    edits = []

    def a_co_author_commits_first() -> None:
        edits.append(1)
        _publish(hub, MINE + f"\nEdit {len(edits)}.\n", tmp_path / "hub")

    hub.before_commit = a_co_author_commits_first
    result = _push(readme, hub, tmp_path / "hf-home")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line == "error: org/model: the card on the Hub changed twice while evalsuite updated it; run the same " \
                   "command again"  # fmt: skip
    assert readme.read_text() == MINE  # nothing pushed, so nothing changed here either


@pytest.mark.subprocess
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_says_to_check_the_token(hub: FakeHub, tmp_path: Path, status: int):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    _publish(hub, MINE, tmp_path / "hub")
    hub.fail_with(status)
    try:
        result = _push(readme, hub, tmp_path / "hf-home")
    finally:
        hub.fail_with(None)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the Hub refused access to org/model ({status}): check the token (HF_TOKEN or")
    assert readme.read_text() == MINE and TOKEN not in result.stderr


@pytest.mark.subprocess
def test_an_unreachable_hub_is_one_line_and_nothing_changes(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    environment = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "h"), "HF_TOKEN": TOKEN}
    args = [EVALSUITE, "card", "update", str(readme), "--results", str(SAKURA), "--push", "org/model"]
    result = subprocess.run(args, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the Hugging Face Hub is unreachable (") and "nothing was pushed" in line
    assert readme.read_text() == MINE


@pytest.mark.subprocess
@pytest.mark.parametrize("status", [401, 403])
def test_a_run_whose_token_is_refused_says_to_check_the_token(hub: FakeHub, tmp_path: Path, status: int):
    hub.fail_with(status)
    environment = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "h"), "HF_TOKEN": TOKEN}
    environment.pop("HF_HUB_OFFLINE", None)
    from conftest import SAMPLE_DATA

    args = [EVALSUITE, "run", "org/model", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(args, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the Hub refused access to org/model ({status}): check the token"), line
    assert not (tmp_path / "out").exists()
