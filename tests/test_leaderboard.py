"""Leaderboards: latest run per model, sorting, the three formats, and the HTML page in a real browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, SAKURA
from golden import check_golden
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.publish.leaderboard import latest_runs, leaderboard_rows
from evalsuite.results import find_runs
from evalsuite.suite import load_suite

RESULTS = FIXTURES / "results"
SUITE = load_suite()
runner = CliRunner()


def test_latest_complete_run_per_model_sorted_by_average():
    runs = latest_runs(find_runs([RESULTS]))
    rows = leaderboard_rows(runs, SUITE)
    assert [(r.model, r.partial) for r in rows] == [
        ("kyujinpy/Sakura-SOLAR-Instruct", False),
        ("upstage/SOLAR-10.7B-Instruct-v1.0", False),
        ("openai-community/gpt2", False),  # its later partial run does not replace the complete one
        ("tiny", True),
    ]
    assert [r.size for r in rows] == ["~ 11B", "~ 11B", "~ 124M", "~ 135M"]


def test_complete_only_leaves_partial_runs_out():
    runs = latest_runs(find_runs([RESULTS]), include_partial=False)
    assert sorted(r.model.id for r in runs) == sorted(
        ["kyujinpy/Sakura-SOLAR-Instruct", "upstage/SOLAR-10.7B-Instruct-v1.0", "openai-community/gpt2"]
    )


@pytest.mark.parametrize("fmt,suffix", [("markdown", "md"), ("csv", "csv"), ("html", "html")])
def test_golden_formats(fmt, suffix, update_golden):
    result = runner.invoke(app, ["leaderboard", str(RESULTS), "--format", fmt, "--model-size"])
    assert result.exit_code == 0, result.output
    check_golden(f"leaderboard.{suffix}", result.stdout, update_golden)


def test_out_file_and_bad_input(tmp_path: Path):
    out = tmp_path / "board.md"
    ok = runner.invoke(app, ["leaderboard", str(RESULTS), "--output", str(out)])
    assert ok.exit_code == 0 and out.read_text().startswith("|Model|Average|ARC|")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["leaderboard", str(empty)])
    assert result.exit_code == 1 and result.stderr.strip().startswith("error: no results.json under")
    (truncated := empty / "org__m" / "run-1" / "results.json").parent.mkdir(parents=True)
    truncated.write_text('{\n  "schema_version": 2,\n  "model": "org/m')
    result = runner.invoke(app, ["leaderboard", str(empty)])  # the only one there, unreadable: why
    why = f"{truncated}: not JSON (Unterminated string starting at line 3)"
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: the only results.json under {empty} is unreadable: {why}\n",
    )
    (second := empty / "org__m" / "run-2" / "results.json").parent.mkdir()
    second.write_text("{}")
    result = runner.invoke(app, ["leaderboard", str(empty)])  # several, none readable: each skipped, then one error
    assert result.exit_code == 1
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["warning", "warning", "error"]
    assert result.stderr.splitlines()[-1] == f"error: none of the 2 results.json under {empty} can be read"
    missing_folder = runner.invoke(app, ["leaderboard", str(RESULTS), "--output", str(tmp_path / "nope" / "x.md")])
    assert missing_folder.exit_code == 1 and "does not exist" in missing_folder.stderr
    assert not (tmp_path / "nope").exists()


def _browser(tmp_path: Path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium and chromium-driver (make test installs them)")
        pytest.skip("chromium / chromedriver not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900"]:  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.browser
def test_html_page_in_headless_chromium(tmp_path: Path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "leaderboard.html"
    result = runner.invoke(
        app, ["leaderboard", str(RESULTS), "--format", "html", "--model-size", "--output", str(page)]
    )
    assert result.exit_code == 0, result.output
    browser = _browser(tmp_path)
    try:
        browser.get(page.as_uri())

        def models() -> list[str]:
            cells = browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr td:first-child")
            return [c.text.splitlines()[0] for c in cells]

        assert models() == ["kyujinpy/Sakura-SOLAR-Instruct", "upstage/SOLAR-10.7B-Instruct-v1.0",
                            "openai-community/gpt2", "tiny (partial)"]  # fmt: skip
        first_row = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr:first-child td")]
        assert first_row[1:] == ["74.40", "70.99", "88.42", "66.33", "71.79", "83.66", "65.20", "~ 11B", "-"]
        solar_row = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr:nth-child(2) td")]
        assert solar_row[-1] == "ARC 0.06 · MMLU 0.15 · TruthfulQA 0.28 · GSM8K 0.70"
        browser.find_element(By.XPATH, "//th[text()='TruthfulQA']").click()  # descending by TruthfulQA
        assert models() == ["kyujinpy/Sakura-SOLAR-Instruct", "upstage/SOLAR-10.7B-Instruct-v1.0",
                            "openai-community/gpt2", "tiny (partial)"]  # fmt: skip
        browser.find_element(By.XPATH, "//th[text()='TruthfulQA']").click()  # again: ascending
        assert models()[:3] == ["openai-community/gpt2", "upstage/SOLAR-10.7B-Instruct-v1.0",
                                "kyujinpy/Sakura-SOLAR-Instruct"]  # fmt: skip
        browser.find_element(By.XPATH, "//th[text()='Winogrande']").click()
        assert models()[0] == "kyujinpy/Sakura-SOLAR-Instruct"
        bars = browser.find_elements(By.CSS_SELECTOR, "#averages .fill")
        assert len(bars) == 4 and bars[0].size["width"] > bars[2].size["width"] > 0
        if shot := os.environ.get("EVALSUITE_SCREENSHOT"):
            browser.save_screenshot(shot)
    finally:
        browser.quit()


def test_complete_runs_that_did_not_ask_the_leaderboards_requests_are_marked():
    schema_1 = FIXTURES / "results-schema-v1"  # read as protocol lm-eval: complete, not comparable
    for fmt, mark in (("markdown", "|kyujinpy/Sakura-SOLAR-Instruct (not comparable)|"),
                      ("csv", "kyujinpy/Sakura-SOLAR-Instruct (not comparable),"),
                      ("html", "(not comparable)</span>")):  # fmt: skip
        result = runner.invoke(app, ["leaderboard", str(schema_1), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert mark in result.stdout, fmt
    comparable = runner.invoke(app, ["leaderboard", str(SAKURA)]).stdout
    assert "not comparable" not in comparable


def test_contamination_column_shows_each_models_latest_check(tmp_path: Path):
    from evalsuite.results import ContaminationResults, find_contamination

    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (solar_check,) = find_contamination([results])
    newer = solar_check.model_copy(
        update={
            "run_id": "20240109T000000Z-0002",
            "created_at": solar_check.created_at.replace(day=9),
            "settings": solar_check.settings.model_copy(update={"threshold": 0.2}),
        }
    )
    folder = results / "other-models" / "upstage__SOLAR-10.7B-Instruct-v1.0" / "contamination-20240109T000000Z-0002"
    folder.mkdir()
    (folder / "contamination.json").write_text(ContaminationResults.model_dump_json(newer))
    rows = leaderboard_rows(latest_runs(find_runs([results])), SUITE, find_contamination([results]))
    assert {r.model: r.contamination for r in rows} == {
        "kyujinpy/Sakura-SOLAR-Instruct": None,
        "upstage/SOLAR-10.7B-Instruct-v1.0": "ARC 0.06 · MMLU 0.15 · TruthfulQA 0.28 · GSM8K 0.70 (r < 0.2)",
        "openai-community/gpt2": None,
        "tiny": None,
    }

    # no check in the folders: no column
    shutil.rmtree(folder)
    shutil.rmtree(folder.parent / "contamination-20240102T000000Z-0001")
    plain = runner.invoke(app, ["leaderboard", str(results)])
    assert plain.exit_code == 0 and "Contamination" not in plain.stdout
    assert plain.stdout.splitlines()[0] == "|Model|Average|ARC|HellaSwag|MMLU|TruthfulQA|Winogrande|GSM8K|"


def test_two_local_models_of_one_name_are_two_rows_each_saying_which(tmp_path: Path):
    """Two local folders named `lora` (different models, the same id) were one row, the newer run hiding the
    other's; now a row each, named with its location's tag (the 8 hex a second model's folder name ends with)."""
    import hashlib
    import json

    gpt2 = RESULTS / "other-models" / "openai-community__gpt2" / "20240103T000000Z-0000" / "results.json"
    out = tmp_path / "out"
    tags = {}
    for location in ("/a/lora", "/b/lora"):
        raw = json.loads(gpt2.read_text())
        raw["model"] |= {"id": "lora", "source": "local", "location": location, "sha": None}
        tags[location] = hashlib.sha256(location.encode()).hexdigest()[:8]
        folder = "local__lora" + ("" if location == "/a/lora" else f"__{tags[location]}")
        (out / folder / raw["run_id"]).mkdir(parents=True)
        (out / folder / raw["run_id"] / "results.json").write_text(json.dumps(raw))
    result = runner.invoke(app, ["leaderboard", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["model"] for r in rows] == ["lora", "lora"]
    assert sorted((r["model"], r["location_tag"]) for r in rows) == sorted(("lora", t) for t in tags.values())
    table = runner.invoke(app, ["leaderboard", str(out)]).stdout
    assert all(f"|lora [{tag}]|" in table for tag in tags.values()), table
