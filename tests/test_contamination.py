"""`evalsuite contamination`: the original's item selection on the real rows, the statistic on known losses,
bad input before a model loads, and the story that matters on the real model: SmolLM2 fine-tuned on 5 ARC
items is flagged, the clean model is not.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, SAKURA, SAMPLE_DATA, train_top_layers
from golden import check_golden
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.contamination import (
    ITEM_TEXTS,
    format_share,
    neighbour_rank,
    prefix_of,
    reported_share,
    select_items,
)
from evalsuite.results import read_contamination
from evalsuite.run import ContaminationRequest, run_contamination
from evalsuite.run import contamination as check_contamination

cli = CliRunner()
SPLITS = {
    "arc": "arc_challenge/test.jsonl",
    "hellaswag": "hellaswag/validation.jsonl",
    "mmlu": "mmlu/test.jsonl",
    "truthfulqa": "truthful_qa/validation.jsonl",
    "winogrande": "winogrande/validation.jsonl",
    "gsm8k": "gsm8k/test.jsonl",
}


def _rows(root: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (root / SPLITS[task]).read_text().splitlines() if line.strip()]


def _original_inputs(task: str, rows: list[dict]) -> list[str]:
    """The original's process_* functions (src/eval.py), written out for ARC, MMLU and TruthfulQA; GSM8K,
    HellaSwag and Winogrande as the issue defines them."""
    out = []
    for ex in rows:
        if task == "arc":
            if ex["answerKey"] not in {"A": 0, "B": 1, "C": 2, "D": 3}:
                continue
            out.append(ex["question"] + " " + ex["choices"]["text"][{"A": 0, "B": 1, "C": 2, "D": 3}[ex["answerKey"]]])
        elif task == "mmlu":
            out.append(ex["question"] + " " + ex["choices"][ex["answer"]])
        elif task == "truthfulqa":
            out.append(ex["question"] + " " + ex["mc1_targets"]["choices"][ex["mc1_targets"]["labels"].index(1)])
        elif task == "gsm8k":
            out.append(ex["question"] + " " + ex["answer"][: ex["answer"].index("####")].strip())
        elif task == "hellaswag":
            out.append(ex["ctx"] + " " + ex["endings"][int(ex["label"])])
        else:
            blank = ex["option1"] if ex["answer"] == "1" else ex["option2"]
            out.append(ex["sentence"].replace("_", blank))
    return out


@pytest.mark.parametrize("task", list(SPLITS))
def test_items_are_the_originals_100_on_the_real_rows(task: str, shared_data: Path):
    rows = _rows(shared_data, task)
    data = [{"input": text} for text in _original_inputs(task, rows)]
    random.seed(0)  # the original: random.seed(0); random.shuffle(test_data); test_data[:100]
    random.shuffle(data)
    selection = select_items(task, rows, 100, seed=0)
    assert [item.text for item in selection.items] == [ex["input"] for ex in data[:100]]
    assert all(ITEM_TEXTS[task](rows[item.row]) == item.text for item in selection.items)
    assert selection.candidates + selection.skipped == len(rows)
    if task == "arc":  # ARC-Challenge test has answer keys 1-4 on some rows: the original skips them
        assert selection.skipped > 0


def test_the_statistic_on_known_losses():
    assert neighbour_rank(2.0, [1.0, 3.0, 1.5, 4.0]) == 0.5  # two neighbours likelier than x
    assert neighbour_rank(0.5, [1.0, 3.0]) == 0.0  # x likelier than every neighbour: r = 0
    assert neighbour_rank(2.0, [2.0, 2.0]) == 0.0  # ties do not count (strictly lower loss)
    assert reported_share([0.05, 0.5, 0.0, 0.09], 0.1) == 0.75
    assert reported_share([0.1, 0.2], 0.1) == 0.0  # r(x) must be below the threshold
    assert format_share(0.06, 0.1) == "result < 0.1, %: 0.06"  # as SOLAR's card quotes it
    assert format_share(0.7, 0.1) == "result < 0.1, %: 0.70"
    assert prefix_of("one two three four five", 0.4) == ("one two", 3)
    assert prefix_of("one", 0.4) == ("one", 1)  # at least one new token


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--items", "0"], "--items 0: give a positive number of items per task"),
        (["--neighbours", "1"], "--neighbours 1: r(x) is a share of neighbours; give at least 2"),
        (["--tasks", "arc,bbh"], "--tasks arc,bbh: choose among arc, hellaswag, mmlu, truthfulqa, winogrande, gsm8k"),
        (["--prefix-ratio", "1.5"], "--prefix-ratio 1.5: give a fraction between 0 and 1"),
        (["--reference", "/no/such/model"], "--reference /no/such/model: no such file or directory"),
        (["--dtype", "foo"], "--dtype 'foo': choose float32, bfloat16, float16 or auto"),
        (["--batch-size", "0"], "--batch-size '0': give a positive int or 'auto'"),
        (["--batch-size", "big"], "--batch-size 'big': give a positive int or 'auto'"),
    ],
)
def test_bad_input_is_one_line_before_a_model_loads(args, message, gguf_path: Path, tmp_path: Path, monkeypatch):
    from evalsuite.engine.backends.hf import HFBackend

    monkeypatch.setattr(HFBackend, "load_scorer", lambda *a: pytest.fail("a model was loaded"))
    out = tmp_path / "results"
    base = ["contamination", str(gguf_path), "--reference", str(gguf_path), "--data-dir", str(SAMPLE_DATA)]
    result = cli.invoke(app, [*base, "--output-dir", str(out), *args])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: {message}"
    assert not out.exists()


def test_auto_scoring_rows_halve_on_out_of_memory_and_stay_halved():
    import torch

    from evalsuite.engine import scoring_rows
    from evalsuite.settings import BatchSize

    tried = []

    def score(rows: int) -> list[float]:
        tried.append(rows)
        if rows > 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [float(rows)]

    auto = scoring_rows(BatchSize.parse("auto"), "cuda")
    assert auto.run(score, "scoring") == [32.0] and tried == [256, 128, 64, 32]
    assert auto.run(score, "scoring") == [32.0] and tried[4:] == [32]  # the next item starts from what fit
    assert scoring_rows(BatchSize.parse("auto"), "cpu").rows == 32  # no OOM to back off from on a CPU: the original's
    with pytest.raises(torch.OutOfMemoryError):  # a fixed size is the user's: never changed behind their back
        scoring_rows(BatchSize(64), "cuda").run(score, "scoring")
    with pytest.raises(RuntimeError, match="shape"):  # other errors are not out-of-memory
        auto.run(lambda rows: (_ for _ in ()).throw(RuntimeError("shape mismatch")), "scoring")


def test_the_shared_prefix_way_gives_the_originals_neighbours_and_ranks(gguf_path: Path, shared_data: Path):
    """Prefix forwarded once, neighbours scored packed: the same sampled texts and the same r(x) as the original's
    way (every neighbour on its own, padded batches), losses equal up to float rounding."""
    from evalsuite.engine import DEFAULT_BACKEND, get_backend, prepare_model, score_items
    from evalsuite.engine.neighbours import packed_token_losses
    from evalsuite.model import parse_model_ref
    from evalsuite.settings import Dtype

    scorer = get_backend(DEFAULT_BACKEND)  # the check's scorer: the registry's, as run_contamination loads it
    model = scorer.load_scorer(prepare_model(parse_model_ref(str(gguf_path))), Dtype.FLOAT32, "cpu", {})
    # a short ARC item and GSM8K's long one (its neighbours fill a pack of hundreds of tokens); 6 neighbours in
    # batches of 4: the original's way pads its last batch, as with more
    items = (
        select_items("arc", _rows(shared_data, "arc"), 1).items
        + select_items("gsm8k", _rows(shared_data, "gsm8k"), 1).items
    )
    original = score_items(items, model, model, 6, 0.4, 0, 4, shared_prefix=False)
    shared = score_items(items, model, model, 6, 0.4, 0, 4, shared_prefix=True)
    for a, b in zip(original, shared, strict=True):
        assert a.neighbours == b.neighbours
        assert a.rank == b.rank
        assert abs(a.loss - b.loss) < 1e-3
        assert max(abs(x - y) for x, y in zip(a.neighbour_losses, b.neighbour_losses, strict=True)) < 1e-3
    assert len({len(s.neighbours) for s in shared}) == 1 and len(set(shared[0].neighbours)) > 1
    # a one-token text predicts nothing: never likelier than x
    assert packed_token_losses(model[0], model[1], ["Hello", items[0].text], 2, None)[0] == float("inf")


def test_a_killed_check_resumes_by_task_and_gives_the_uninterrupted_numbers(
    gguf_path: Path, tmp_path: Path, monkeypatch
):
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    # a reference whose tokenizer differs (one added token): allowed, with a warning
    clean = Path(prepare_model(parse_model_ref(str(gguf_path))).pretrained)
    reference = tmp_path / "reference"
    shutil.copytree(clean, reference)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reference)
    tokenizer.add_tokens(["<evalsuite-extra>"])
    tokenizer.save_pretrained(reference)

    def request(out: str) -> ContaminationRequest:
        return ContaminationRequest(
            model=str(gguf_path), reference=str(reference), data_dir=SAMPLE_DATA, tasks=("arc", "truthfulqa"),
            items=2, neighbours=3, output_dir=tmp_path / out,
        )  # fmt: skip

    # the uninterrupted check, through the CLI: the card's table on stdout, the warning on stderr
    args = ["contamination", str(gguf_path), "--reference", str(reference), "--data-dir", str(SAMPLE_DATA),
            "--tasks", "arc,truthfulqa", "--items", "2", "--neighbours", "3",
            "--output-dir", str(tmp_path / "whole")]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "use different tokenizers" in result.stderr
    lines = result.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:4]] == ["Model", "ARC", "TruthfulQA"]
    assert lines[2].startswith("| SmolLM2-135M-Instruct.Q4_1 | result < 0.1, %: 0.")
    assert "a sign of contamination, not a proof" in result.stdout
    (folder,) = (tmp_path / "whole" / "local__SmolLM2-135M-Instruct.Q4_1").glob("contamination-*")
    uninterrupted = check_contamination.ContaminationOutcome(read_contamination(folder), folder)
    assert uninterrupted.results.settings.neighbours == 3 and uninterrupted.results.settings.shared_prefix

    real_score_items = check_contamination.score_items
    scored: list[str] = []

    def killed_on_truthfulqa(items, *args, **kwargs):
        scored.append(items[0].task)
        if items[0].task == "truthfulqa":
            raise KeyboardInterrupt
        return real_score_items(items, *args, **kwargs)

    monkeypatch.setattr(check_contamination, "score_items", killed_on_truthfulqa)
    with pytest.raises(KeyboardInterrupt):
        run_contamination(request("killed"))
    model_folder = tmp_path / "killed" / "local__SmolLM2-135M-Instruct.Q4_1"
    (partial,) = model_folder.glob(".inprogress-*")  # the run's own checkpoint (run/checkpoint.py)
    assert sorted(p.name for p in (partial / "tasks").iterdir()) == ["arc.json", "arc.jsonl"]

    def scored_again(items, *args, **kwargs):
        scored.append(items[0].task)
        return real_score_items(items, *args, **kwargs)

    monkeypatch.setattr(check_contamination, "score_items", scored_again)
    messages: list[str] = []
    resumed = run_contamination(request("killed"), progress=messages.append)
    assert scored == ["arc", "truthfulqa", "truthfulqa"]  # arc was not scored again
    assert any("resuming an interrupted check: arc done earlier" in m for m in messages)
    assert [p.name for p in model_folder.iterdir()] == [resumed.folder.name]  # no partial folder left
    assert sorted(p.name for p in resumed.folder.iterdir()) == ["contamination.json", "items.jsonl"]
    # the same numbers as the uninterrupted check: seeded end to end
    assert [t.share for t in resumed.results.tasks] == [t.share for t in uninterrupted.results.tasks]
    assert (resumed.folder / "items.jsonl").read_text() == (uninterrupted.folder / "items.jsonl").read_text()


ITEMS_TRAINED_ON = 5
# The contaminated copy trains the top 8 of 30 layers (the whole model, embeddings included, at 1e-4 took 25 s of
# the test's 66 s on one thread); 4 neighbours per item, not 8 (their sampling took 32 s). Measured with both:
# shares 1.00 vs 0.00, as with the whole model and 8 neighbours.
TRAINED_LAYERS = 8
TRAINING_RATE = 1e-3
NEIGHBOURS = 4


def _fine_tune_on(texts: list[str], clean: Path, into: Path) -> None:
    """A contaminated copy: a few epochs of plain language modelling on the items' own texts (the top TRAINED_LAYERS
    layers)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(clean)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(clean, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(train_top_layers(model, TRAINED_LAYERS), lr=TRAINING_RATE)
    for _ in range(4):
        for start in range(0, len(texts), 5):
            batch = tokenizer(texts[start : start + 5], padding=True, return_tensors="pt")
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)


def test_a_model_trained_on_the_items_is_flagged_and_the_clean_one_is_not(
    gguf_path: Path, shared_data: Path, tmp_path: Path
):
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    clean = Path(prepare_model(parse_model_ref(str(gguf_path))).pretrained)
    # 5 items keep the margin (measured shares: 0.97 vs 0.07 on 30 items, 1.00 vs 0.07 on 15, 1.00 vs 0.00 on 10
    # and on 5); with 5 the thresholds below ask at least 3 of 5 flagged, and 3 more than the clean model's
    items = select_items("arc", _rows(shared_data, "arc"), ITEMS_TRAINED_ON).items  # as the seeded shuffle selects
    contaminated = tmp_path / "SmolLM2-contaminated"
    _fine_tune_on([item.text for item in items], clean, contaminated)

    shares = {}
    for name, target in (("contaminated", contaminated), ("clean", clean)):
        request = ContaminationRequest(
            model=str(target), reference=str(clean), data_dir=shared_data, tasks=("arc",), items=ITEMS_TRAINED_ON,
            neighbours=NEIGHBOURS, output_dir=tmp_path / "results",
        )  # fmt: skip
        outcome = run_contamination(request)
        (task,) = outcome.results.tasks
        shares[name] = task.share
        assert read_contamination(outcome.folder) == outcome.results
        records = [json.loads(line) for line in (outcome.folder / "items.jsonl").read_text().splitlines()]
        assert [r["row"] for r in records] == [item.row for item in items]
        for record in records:  # every stored r(x) follows from the stored losses
            assert record["rank"] == neighbour_rank(record["loss"], record["neighbour_losses"])
            assert len(record["neighbour_losses"]) == NEIGHBOURS
        assert task.share == reported_share([r["rank"] for r in records], 0.1)
    print(f"share with r(x) < 0.1: contaminated {shares['contaminated']:.2f}, clean {shares['clean']:.2f}")
    assert shares["contaminated"] > 0.5
    assert shares["contaminated"] > shares["clean"] + 0.4


def test_committed_json_schema_is_current():
    from evalsuite.results import CONTAMINATION_SCHEMA_VERSION, ContaminationResults

    path = (
        Path(__file__).resolve().parent.parent
        / "evalsuite"
        / "schema"
        / f"contamination.v{CONTAMINATION_SCHEMA_VERSION}.json"
    )
    assert json.loads(path.read_text()) == ContaminationResults.model_json_schema(), (
        f"ContaminationResults changed: python -m evalsuite.schema contamination > {path}"
    )


SOLAR = "upstage/SOLAR-10.7B-Instruct-v1.0"
SOLAR_SHARES = {"ARC": 0.06, "MMLU": 0.15, "TruthfulQA": 0.28, "GSM8K": 0.70}  # as its model card publishes them


def _solar_like(tmp_path: Path, model_id: str = SOLAR, shares: dict[str, float] = SOLAR_SHARES) -> Path:
    """A contamination file with `shares` (default: upstage/SOLAR-10.7B-Instruct-v1.0's published ones), written
    here, not run, as evalsuite 0.2 wrote it (schema 1: one `seed`, four versions): read through its migration."""
    model = {"id": model_id, "source": "hub", "location": model_id, "revision": None, "file_sha256": None}
    reference = model | {"id": "upstage/SOLAR-10.7B-v1.0", "location": "upstage/SOLAR-10.7B-v1.0"}
    tasks = [
        {"key": column.lower(), "column": column, "display_name": column, "share": share,
         "reported": format_share(share, 0.1), "items": 100, "candidates": 1165, "skipped_rows": 7, "seconds": 1.0}
        for column, share in shares.items()
    ]  # fmt: skip
    raw = {
        "schema_version": 1, "kind": "contamination", "run_id": "20240101T000000Z-0000",
        "created_at": "2024-01-01T00:00:00Z", "target": model, "reference": reference,
        "settings": {"items": 100, "neighbours": 100, "prefix_ratio": 0.4, "threshold": 0.1, "seed": 0,
                     "batch_size": 32, "dtype": "bfloat16", "device": "cuda", "data_dir": "/data"},
        "tasks": tasks, "versions": {"evalsuite": "0.2.0", "lm_eval": "0.4.9", "transformers": "4.51.0",
                                     "torch": "2.6.0"},
        "total_seconds": 1.0,
    }  # fmt: skip
    folder = tmp_path / f"contamination-{len(list(tmp_path.glob('contamination-*')))}"
    folder.mkdir()
    (folder / "contamination.json").write_text(json.dumps(raw))
    return folder


def test_card_render_prints_the_table_solars_card_shows(tmp_path: Path, update_golden: bool):
    folder = _solar_like(tmp_path)
    result = cli.invoke(app, ["card", "render", str(folder), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    check_golden("solar.contamination.md", result.stdout, update_golden)
    lines = result.stdout.splitlines()
    assert lines[0] == "## Contamination test"
    assert lines[-3:] == [
        "|Model|ARC|MMLU|TruthfulQA|GSM8K|",
        "|-----|---|---|---|---|",
        "|upstage/SOLAR-10.7B-Instruct-v1.0|result < 0.1, %: 0.06|result < 0.1, %: 0.15|result < 0.1, %: 0.28|"
        "result < 0.1, %: 0.70|",
    ]
    assert "not a proof" in result.stdout and "sampled by upstage/SOLAR-10.7B-v1.0" in result.stdout
    refused = cli.invoke(app, ["card", "render", str(folder / "contamination.json"), "--format", "model-index"])
    assert refused.exit_code == 1 and "has no model-index form" in refused.stderr


# ------------------------------------------------------------------------------ card update --contamination

SAKURA_CARD = FIXTURES / "cards" / "real" / "kyujinpy__Sakura-SOLAR-Instruct.md"
SAKURA_ID = "kyujinpy/Sakura-SOLAR-Instruct"


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end) + len(end)]


def test_card_update_gives_the_check_its_own_section_losslessly_and_idempotently(tmp_path: Path):
    from evalsuite.publish.card import CONTAMINATION_END_MARKER, CONTAMINATION_START_MARKER, END_MARKER, START_MARKER

    readme = tmp_path / "README.md"
    original = SAKURA_CARD.read_bytes().decode("utf-8")
    readme.write_text(original, newline="")
    check = _solar_like(tmp_path, SAKURA_ID, {"ARC": 0.04, "MMLU": 0.12, "TruthfulQA": 0.31, "GSM8K": 0.66})
    both = ["card", "update", str(readme), "--results", str(SAKURA), "--contamination", str(check)]

    before = cli.invoke(app, [*both, "--check"])
    assert before.exit_code == 1 and "is out of date" in before.stderr and "--contamination" in before.stderr
    assert cli.invoke(app, both).exit_code == 0
    updated = readme.read_bytes().decode("utf-8")

    # the results part is exactly what a results-only update writes; the check adds only its own section
    alone = tmp_path / "alone.md"
    alone.write_text(original, newline="")
    assert cli.invoke(app, ["card", "update", str(alone), "--results", str(SAKURA)]).exit_code == 0
    section = _between(updated, CONTAMINATION_START_MARKER, CONTAMINATION_END_MARKER)
    assert updated.replace(section + "\n", "").rstrip("\n") == alone.read_text().rstrip("\n")
    assert "|kyujinpy/Sakura-SOLAR-Instruct|result < 0.1, %: 0.04|result < 0.1, %: 0.12|" in section
    assert START_MARKER not in section and _between(updated, START_MARKER, END_MARKER) not in section

    again = cli.invoke(app, both)
    assert again.exit_code == 0 and "already up to date" in again.stderr
    assert readme.read_bytes().decode("utf-8") == updated
    assert cli.invoke(app, [*both, "--check"]).exit_code == 0

    # a newer check replaces its section alone: every byte outside it stays
    newer = _solar_like(tmp_path, SAKURA_ID, {"ARC": 0.91})
    assert cli.invoke(app, ["card", "update", str(readme), "--contamination", str(newer)]).exit_code == 0
    rewritten = readme.read_text()
    new_section = _between(rewritten, CONTAMINATION_START_MARKER, CONTAMINATION_END_MARKER)
    assert rewritten.replace(new_section, section) == updated
    assert "|Model|ARC|" in new_section and "result < 0.1, %: 0.91" in new_section and "MMLU" not in new_section


def test_card_update_contamination_on_a_new_readme_and_with_crlf(tmp_path: Path):
    check = _solar_like(tmp_path)
    readme = tmp_path / "README.md"
    assert cli.invoke(app, ["card", "update", str(readme), "--contamination", str(check)]).exit_code == 0
    created = readme.read_text()
    assert created.startswith("<!-- evalsuite:contamination:start -->\n## Contamination test\n")
    crlf = tmp_path / "crlf.md"
    crlf.write_bytes(b"---\r\nlicense: mit\r\n---\r\n# My model\r\n")
    assert cli.invoke(app, ["card", "update", str(crlf), "--contamination", str(check)]).exit_code == 0
    data = crlf.read_bytes()
    assert data.startswith(b"---\r\nlicense: mit\r\n---\r\n# My model\r\n\r\n<!-- evalsuite:contamination:start")
    assert b"\n" not in data.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give --results RUN, --contamination CHECK, --peers MODELS or --from-leaderboard MODEL"),
        (["--results", str(SAKURA), "--contamination", "{check}"], "give files of the same model"),
        (["--contamination", str(SAKURA)], "not a contamination check's folder or file"),
    ],
)
def test_card_update_contamination_refuses_bad_input_writing_nothing(extra, message, tmp_path: Path):
    check = _solar_like(tmp_path)  # of upstage/SOLAR-10.7B-Instruct-v1.0, not of Sakura
    readme = tmp_path / "README.md"
    readme.write_text("# mine\n")
    args = [a.replace("{check}", str(check)) for a in extra]
    result = cli.invoke(app, ["card", "update", str(readme), *args])
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert readme.read_text() == "# mine\n"


def test_a_terminal_shows_one_bar_per_task_counting_items(gguf_path: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(check_contamination, "interactive", lambda: True)  # as on a terminal
    request = ContaminationRequest(
        model=str(gguf_path), reference=str(gguf_path), data_dir=SAMPLE_DATA, tasks=("truthfulqa",), items=2,
        neighbours=2, output_dir=tmp_path / "results",
    )  # fmt: skip
    run_contamination(request)
    bars = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "items [" in line]
    assert bars and all(line.startswith("[1/1] truthfulqa ") for line in bars)
    assert any("2/2 items" in line for line in bars)


def _publish_hub_layout(root: Path, spec, rows: list[dict], monkeypatch) -> None:
    """`spec`'s eval split as its Hub repository lays it out today: parquet shards under a config folder, named
    by the dataset card's `configs`. `datasets.load_dataset("org/name", ...)` reads a folder at that relative
    path as it reads the Hub repository, so the real library parses the card and the shards."""
    import datasets
    from datasets import Dataset

    # datasets caches a folder's rows by its path, not its content: a cache per test, or a test reads another's
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "datasets-cache"))
    config = spec.data.hub_all_config or spec.data.hub_config or "default"
    repo = root / spec.data.hub_dataset
    split = spec.data.eval_split
    (repo / config).mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(str(repo / config / f"{split}-00000-of-00001.parquet"))
    card = ["---", "configs:", f"- config_name: {config}", "  data_files:", f"  - split: {split}",
            f"    path: {config}/{split}-*", "---", ""]  # fmt: skip
    (repo / "README.md").write_text("\n".join(card))


def test_hub_rows_select_the_items_the_snapshot_selects(shared_data: Path, tmp_path: Path, monkeypatch):
    from evalsuite.data import eval_rows, plan_hub, plan_local
    from evalsuite.suite import load_suite

    specs = load_suite().select(list(SPLITS))
    for data in plan_local(shared_data, specs).tasks:
        _publish_hub_layout(tmp_path / "hub", data.spec, eval_rows(data), monkeypatch)
    monkeypatch.chdir(tmp_path / "hub")
    for local, hub in zip(plan_local(shared_data, specs).tasks, plan_hub(specs).tasks, strict=True):
        assert not hub.is_local
        hub_rows = eval_rows(hub)  # through datasets: the card's config (MMLU: `all`) and split
        assert len(hub_rows) == local.files[0].rows
        key = local.spec.key
        assert select_items(key, hub_rows, 100).items == select_items(key, eval_rows(local), 100).items


def test_a_check_without_data_dir_reads_the_hub_datasets(gguf_path: Path, tmp_path: Path, monkeypatch):
    from evalsuite.data import eval_rows, plan_local
    from evalsuite.suite import load_suite

    (spec,) = load_suite().select(["truthfulqa"])
    (data,) = plan_local(SAMPLE_DATA, [spec]).tasks
    _publish_hub_layout(tmp_path / "hub", spec, eval_rows(data), monkeypatch)
    monkeypatch.chdir(tmp_path / "hub")
    # the Hub probe is tested on its own (below); here the "repository" is the folder above
    monkeypatch.setattr(check_contamination, "check_hub_access", lambda ref, dataset: None)
    checks = {}
    for data_dir in (None, SAMPLE_DATA):
        request = ContaminationRequest(
            model=str(gguf_path), reference=str(gguf_path), data_dir=data_dir, tasks=("truthfulqa",), items=2,
            neighbours=3, output_dir=tmp_path / f"out-{data_dir is None}", batch_size="auto" if data_dir else 32,
        )  # fmt: skip
        checks[data_dir] = run_contamination(request)
    hub, local = checks[None], checks[SAMPLE_DATA]
    assert local.results.settings.batch_size == "auto"  # recorded as asked; the numbers do not depend on it
    assert hub.results.settings.data_dir is None and local.results.settings.data_dir == str(SAMPLE_DATA.resolve())
    assert hub.results.tasks[0].share == local.results.tasks[0].share
    assert (hub.folder / "items.jsonl").read_text() == (local.folder / "items.jsonl").read_text()


@pytest.mark.subprocess
def test_datasets_from_an_unreachable_hub_are_one_line_asking_for_a_data_dir(gguf_path: Path, tmp_path: Path):
    out = tmp_path / "results"
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        environment.pop(name, None)
    command = [str(Path(sys.executable).parent / "evalsuite"), "contamination", str(gguf_path), "--reference",
               str(gguf_path), "--tasks", "arc", "--output-dir", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "the datasets come from it: pass --data-dir" in line
    assert not out.exists()
