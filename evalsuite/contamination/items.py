"""The items of the contamination test: per benchmark, the text x = question + " " + correct answer of each
eval row (as swj0419/detect-pretrain-code-contamination builds it; HellaSwag and Winogrande beyond it), and
the items it tests: the texts in split order, shuffled with `random.seed(0)`, the first 100."""


from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import SuiteConfigError

# The tasks the test runs on, by suite key: the original's four, and HellaSwag and Winogrande beyond it.
ORIGINAL_TASKS = ("arc", "mmlu", "truthfulqa", "gsm8k")
_ARC_LABELS = {"A": 0, "B": 1, "C": 2, "D": 3}  # the original skips rows whose answerKey is anything else


def _arc_text(row: dict[str, Any]) -> str | None:
    if row["answerKey"] not in _ARC_LABELS:
        return None
    return row["question"] + " " + row["choices"]["text"][_ARC_LABELS[row["answerKey"]]]


def _mmlu_text(row: dict[str, Any]) -> str:
    return row["question"] + " " + row["choices"][row["answer"]]


def _truthfulqa_text(row: dict[str, Any]) -> str:
    targets = row["mc1_targets"]
    return row["question"] + " " + targets["choices"][targets["labels"].index(1)]


def _gsm8k_text(row: dict[str, Any]) -> str:
    return row["question"] + " " + row["answer"].split("####")[0].strip()


def _hellaswag_text(row: dict[str, Any]) -> str:
    return row["ctx"] + " " + row["endings"][int(row["label"])]


def _winogrande_text(row: dict[str, Any]) -> str:
    return row["sentence"].replace("_", row["option" + row["answer"]])


# Suite task key -> the text x of one eval row (None: the original skips the row).
ITEM_TEXTS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "arc": _arc_text,
    "hellaswag": _hellaswag_text,
    "mmlu": _mmlu_text,
    "truthfulqa": _truthfulqa_text,
    "winogrande": _winogrande_text,
    "gsm8k": _gsm8k_text,
}


@dataclass(frozen=True)
class Item:
    task: str
    row: int  # index of the row in the eval split, Hub order
    text: str


@dataclass(frozen=True)
class Selection:
    items: list[Item]
    candidates: int  # rows that make a text
    skipped: int  # rows the original skips (ARC answer keys outside A-D)


def select_items(task: str, rows: Sequence[dict[str, Any]], count: int, seed: int = 0) -> Selection:
    """The items the original tests: its texts in split order, `random.seed(seed); random.shuffle(...)`, the
    first `count` (a shuffle depends only on the list's length, so shuffling indices picks the same rows)."""
    if task not in ITEM_TEXTS:
        raise SuiteConfigError(f"contamination: no item text for task {task!r}; choose {', '.join(ITEM_TEXTS)}")
    texts = [(i, text) for i, row in enumerate(rows) if (text := ITEM_TEXTS[task](row)) is not None]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    chosen = [Item(task, texts[j][0], texts[j][1]) for j in order[:count]]
    return Selection(chosen, candidates=len(texts), skipped=len(rows) - len(texts))
