"""Protocol leaderboard-v1 asks the model what the Open LLM Leaderboard asked it.

../shared/data/v1-reference holds every request the leaderboard's harness (lm-eval b281b09) builds from the
real rows in ../shared/data/h6. `evalsuite prompts` builds them with lm-eval 0.4 and evalsuite's protocol;
here every document of every task is compared with the reference, byte for byte. The reference is only read
by these tests: evalsuite computes the exemplars itself.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLE_DATA

from evalsuite.data import plan_local
from evalsuite.engine import runner
from evalsuite.run import PromptsRequest, build_prompts
from evalsuite.settings import BatchSize, Dtype, Seeds
from evalsuite.suite import DocumentRequests, Protocol, default_tasks_dir, leaderboard_exemplar_draws, load_suite

pytestmark = pytest.mark.lm_eval  # every test builds lm-eval requests

REFERENCE = REPO.parent / "shared" / "data" / "v1-reference"
V1 = load_suite().for_protocol(Protocol.LEADERBOARD_V1)
GSM8K_V1_STOPS = [":", "Question:", "Question"]  # b281b09 lm_eval/tasks/gsm8k.py
HELLASWAG_TRAIN_ROWS = 39905


@pytest.fixture(scope="module")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"the leaderboard's requests are not at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="module")
def snapshot(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """../shared/data/h6 plus the stand-in HellaSwag train split the reference was built with (its README):
    row i reads `TRAIN#i`, so the exemplars chosen are visible in the prompt."""
    root = tmp_path_factory.mktemp("h6-with-hellaswag-stand-in")
    for folder in shared_data.iterdir():
        if folder.is_dir() and folder.name != "hellaswag":
            (root / folder.name).symlink_to(folder)
    (root / "hellaswag").mkdir()
    (root / "hellaswag" / "validation.jsonl").symlink_to(shared_data / "hellaswag" / "validation.jsonl")
    with (root / "hellaswag" / "train.jsonl").open("w") as f:
        for i in range(HELLASWAG_TRAIN_ROWS):
            row = {"ind": i, "activity_label": f"TRAIN#{i}", "ctx_a": f"TRAIN#{i}", "ctx_b": "", "ctx": f"TRAIN#{i}",
                   "endings": ["e0", "e1", "e2", "e3"], "source_id": "", "split": "train", "split_type": "",
                   "label": "0"}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return root


def _reference_requests(reference: Path, key: str) -> dict[tuple[str, int], list]:
    """(lm-eval 0.4 task name, doc) -> the leaderboard's requests for that document."""
    renamed = {"truthfulqa_mc": "truthfulqa_mc2"}
    found = {}
    with gzip.open(reference / f"{key}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            task = renamed.get(record["task"], record["task"].replace("hendrycksTest-", "mmlu_"))
            found[(task, record["doc"])] = record["requests"]
    return found


def _as_leaderboard_sent(doc: DocumentRequests) -> list[Any]:
    """Our requests in the reference's shape. GSM8K: b281b09's request held only `until`; the rest of its
    generation settings (greedy, 256 new tokens) are checked separately."""
    if doc.task == "gsm8k":
        return [["greedy_until", [context, {"until": settings["until"]}]] for context, settings in doc.requests]  # type: ignore[index]  # GSM8K's requests: (context, settings)
    return [["loglikelihood", [context, continuation]] for context, continuation in doc.requests]


def _mc2_part(doc: DocumentRequests, requests: list) -> list:
    """b281b09's truthfulqa_mc sent MC1's requests, then MC2's; lm-eval 0.4's truthfulqa_mc2 sends MC2's."""
    return requests[len(requests) - len(doc.requests) :]


@pytest.mark.parametrize("key", ["arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k"])
def test_every_request_of_every_document_is_the_leaderboards(key: str, snapshot: Path, reference: Path):
    (prompts,) = build_prompts(PromptsRequest(tasks=[key], data_dir=snapshot))
    expected = _reference_requests(reference, key)
    assert len(prompts.documents) == len(expected) == V1.task(key).full_eval_rows
    identical = 0
    for doc in prompts.documents:
        leaderboard = expected[(doc.lm_eval_task, doc.doc_id)]
        if key == "truthfulqa":
            leaderboard = _mc2_part(doc, leaderboard)
        if _as_leaderboard_sent(doc) == leaderboard:
            identical += 1
        else:
            pytest.fail(f"{doc.lm_eval_task} doc {doc.doc_id}: requests differ from the leaderboard's")
    if key == "gsm8k":
        assert {json.dumps(settings, sort_keys=True) for d in prompts.documents for _, settings in d.requests} == {
            json.dumps(
                {"until": GSM8K_V1_STOPS, "max_gen_toks": 256, "do_sample": False, "temperature": 0.0}, sort_keys=True
            )
        }
    print(f"\n{key}: {identical} of {len(expected)} documents, {prompts.requests} requests identical to the "
          f"leaderboard's ({prompts.seconds:.0f}s)")  # fmt: skip
    assert identical == len(expected)


def test_a_limited_run_asks_what_the_full_run_asked_of_its_first_documents(snapshot: Path, reference: Path):
    (prompts,) = build_prompts(PromptsRequest(tasks=["winogrande"], limit=7, data_dir=snapshot))
    expected = _reference_requests(reference, "winogrande")
    assert [d.doc_id for d in prompts.documents] == list(range(7))  # the first 7 in Hub order
    assert all(_as_leaderboard_sent(d) == expected[("winogrande", d.doc_id)] for d in prompts.documents)


def test_a_preset_asks_what_the_full_run_asked_of_its_documents(snapshot: Path, reference: Path):
    data = plan_local(snapshot, V1.select(["arc"])).tasks[0]
    group = runner.load_task_group(runner.build_task_manager(default_tasks_dir()), default_tasks_dir(), data,
                                   V1.preset("nightly"))  # fmt: skip
    documents = runner.build_requests(group, None, Seeds())
    assert group.document_ids is not None  # a preset chose them
    chosen = group.document_ids["arc_challenge"]
    assert [d.doc_id for d in documents] == chosen and len(chosen) == 100 and chosen != list(range(100))
    expected = _reference_requests(reference, "arc")
    assert all(_as_leaderboard_sent(d) == expected[("arc_challenge", d.doc_id)] for d in documents)


def test_the_walk_is_the_leaderboards_on_a_small_split():
    # b281b09: rnd = random.Random(); rnd.seed(42); rnd.shuffle(docs); then rnd.sample(train, k) per doc in
    # that order. Written out here with the population itself, not its indices.
    import random

    docs, train = [f"doc{i}" for i in range(30)], [f"ex{i}" for i in range(50)]
    rnd = random.Random()
    rnd.seed(42)
    walk = list(docs)
    rnd.shuffle(walk)
    drawn = {doc: rnd.sample(train, 5) for doc in walk}
    ours = leaderboard_exemplar_draws(len(docs), len(train), 5)
    assert [[train[i] for i in ours[d]] for d in range(30)] == [drawn[doc] for doc in docs]


def test_missing_few_shot_split_falls_back_to_the_eval_split_without_the_scored_document(shared_data: Path):
    # ../shared/data/h6 has no HellaSwag train split: exemplars come from validation, the scored document never
    # among them (b281b09's rule for tasks without training docs: draw k + 1, drop the document, keep k).
    (prompts,) = build_prompts(PromptsRequest(tasks=["hellaswag"], limit=40, data_dir=shared_data))
    assert prompts.data.fewshot.fallback
    assert [d.doc_id for d in prompts.documents] == list(range(40))
    for doc in prompts.documents:
        context = doc.requests[0][0]
        own = context.rsplit("\n\n", 1)[1]  # the scored document's own query ends the context
        assert context.count(own) == 1 and context.count("\n\n") == 10, doc.doc_id


# ----------------------------------------------------------------------------- GSM8K's answer check

_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")  # b281b09 lm_eval/tasks/gsm8k.py ANS_RE


def _b281b09_is_correct(completion: str, answer: str) -> bool:
    """b281b09's GradeSchoolMath8K._is_correct, written out as the oracle."""

    def extract(text: str) -> str:
        match = _ANSWER.search(text)
        return match.group(1).strip().replace(",", "") if match else "[invalid]"

    return extract(completion) == extract(answer)


def _completions(gold: str) -> list[str]:
    """Completions a model writes, around the gold answer: commas, decimals, "$", trailing dots, no answer."""
    number = int(gold) if gold.lstrip("-").isdigit() else None
    variants = [gold, f"{gold}.", f"{gold}.0", f"{gold}.00", f"${gold}", f"{gold},", f"-{gold}", f"{gold}0"]
    if number is not None:
        variants += [f"{number:,}", f"{number + 1}", f"{number:,}.", f"{number * 1000:,}"]
    texts = []
    for v in variants:
        texts += [f" So the answer is\n#### {v}", f" ... #### {v}\n\n", f"#### {v} dollars", f"####{v}",
                  f"#### {v}#### 7", f"#### 7 #### {v}", f"The answer is {v}.", f"#### {v.upper()}"]  # fmt: skip
    return texts


def _gsm8k_task(protocol: Protocol, limit: int):
    suite = load_suite().for_protocol(protocol)
    data = plan_local(SAMPLE_DATA, suite.select(["gsm8k"])).tasks[0]
    group = runner.load_task_group(runner.build_task_manager(default_tasks_dir()), default_tasks_dir(), data)
    runner.build_requests(group, limit, Seeds())
    return group.tasks["gsm8k"], suite.task("gsm8k").metric


def _lm_eval_scores(task, metric, completions: list[str]) -> list[bool]:
    """Each completion scored by lm-eval's own filter and metric pipeline as the task is configured."""
    scores = []
    for completion in completions:
        for instance in task.instances:
            instance.resps = [completion]
            instance.filtered_resps = {}
        task.apply_filters()
        for instance in task.instances:
            result = task.process_results(instance.doc, [instance.filtered_resps[metric.filter]])
            scores.append(bool(result[metric.name]))
    return scores


def test_gsm8k_answer_check_is_the_leaderboards_where_lm_evals_strict_match_is_not():
    v1_task, v1_metric = _gsm8k_task(Protocol.LEADERBOARD_V1, limit=12)
    lm_task, lm_metric = _gsm8k_task(Protocol.LM_EVAL, limit=12)
    pairs = []  # (completion, reference solution), every completion against every document
    for instance in v1_task.instances:
        gold = _ANSWER.search(instance.doc["answer"]).group(1)
        pairs += [(c, instance.doc["answer"]) for c in _completions(gold)]
    completions = sorted({c for c, _ in pairs})
    answers = [i.doc["answer"] for i in v1_task.instances]
    oracle = [_b281b09_is_correct(c, a) for c in completions for a in answers]
    ours = _lm_eval_scores(v1_task, v1_metric, completions)
    strict = _lm_eval_scores(lm_task, lm_metric, completions)
    disagreements = sum(s != o for s, o in zip(strict, oracle, strict=True))
    print(f"\n{len(completions)} completions x {len(answers)} documents: leaderboard-v1 agrees with b281b09 on "
          f"{sum(x == o for x, o in zip(ours, oracle, strict=True))} of {len(oracle)} ({sum(oracle)} correct); "
          f"lm-eval's strict-match disagrees on {disagreements}")  # fmt: skip
    assert len(completions) >= 300 and sum(oracle) >= 30
    assert ours == oracle
    assert disagreements > 0  # "#### 18." counts under strict-match, not on the leaderboard


def test_gsm8k_reference_answers_are_read_alike_on_every_real_row(shared_data: Path):
    # lm-eval's metric reads the reference as the text after "#### " (commas removed); b281b09 as its regex
    # match. On every real solution they agree, so a completion's score depends only on the completion.
    for split in ("test", "train"):
        for line in (shared_data / "gsm8k" / f"{split}.jsonl").open():
            answer = json.loads(line)["answer"]
            match = _ANSWER.search(answer)
            assert match is not None and re.sub(r"(?s).*#### ", "", answer.replace(",", "")) == match.group(1).replace(
                ",", ""
            )


# ------------------------------------------------------------------ GSM8K's stops reach the generator

# GSM8K test documents on which SmolLM2-135M-Instruct, given its leaderboard-v1 context, writes a ":" (a clock
# time, a ratio) within its answer; found by generating for the questions that contain one.
COLON_DOCUMENTS = (23, 116)


@pytest.mark.parametrize("backend", ["shared-prefix", "lm-eval-hf"])
def test_gsm8k_generation_stops_at_the_first_colon_under_leaderboard_v1_only(backend, gguf_path, shared_data):
    from lm_eval.api.instance import Instance

    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    def gsm8k_group(protocol: Protocol, limit: int | None) -> runner.TaskGroup:
        suite = load_suite().for_protocol(protocol)
        data = plan_local(shared_data, suite.select(["gsm8k"])).tasks[0]
        group = runner.load_task_group(runner.build_task_manager(default_tasks_dir()), default_tasks_dir(), data)
        runner.build_requests(group, limit, Seeds())
        return group

    leaderboard = [i for i in gsm8k_group(Protocol.LEADERBOARD_V1, None).tasks["gsm8k"].instances
                   if i.doc_id in COLON_DOCUMENTS]  # fmt: skip
    lm_eval_settings = gsm8k_group(Protocol.LM_EVAL, 1).tasks["gsm8k"].instances[0].args[1]
    assert leaderboard[0].args[1]["until"] == GSM8K_V1_STOPS and ":" not in lm_eval_settings["until"]
    model = runner.load_model(
        prepare_model(parse_model_ref(str(gguf_path))),
        runner.ModelSettings(
            dtype=Dtype.FLOAT32, device="cpu", batch_size=BatchSize(8), add_bos_token=False, backend=backend
        ),
    )
    stopped = model.lm.generate_until(leaderboard)
    # the same contexts with lm-eval 0.4's generation settings, decoded a little past the stopped texts' length
    # instead of lm-eval's 256 tokens: greedy decoding gives the same first tokens whatever the budget, so the
    # colon the stopped run ended before is in them (and a run that did not stop at it sets a longer budget)
    budget = max(len(model.lm.tok_encode(text)) for text in stopped) + 16
    settings = {**lm_eval_settings, "max_gen_toks": budget}
    plain = [Instance("generate_until", i.doc, (i.args[0], dict(settings)), 0, ("gsm8k", i.doc_id, 1))
             for i in leaderboard]  # fmt: skip
    unstopped = model.lm.generate_until(plain)
    for text, longer in zip(stopped, unstopped, strict=True):
        print(f"\n{backend}: leaderboard-v1 {text!r}\n{' ' * len(backend)}  lm-eval        {longer!r}")
        assert ":" in longer  # lm-eval 0.4 generates through the colon ...
        cut = longer
        for stop in GSM8K_V1_STOPS:
            cut = cut.split(stop)[0]
        assert text == cut and ":" not in text  # ... the leaderboard's harness stopped at it
