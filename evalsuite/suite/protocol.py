"""Protocols: what the model is asked.

- `leaderboard-v1` (the default) asks what the Open LLM Leaderboard (v1) asked: its harness, lm-eval at
  commit b281b09, built every request from the same task templates lm-eval 0.4 uses, but chose few-shot
  exemplars by its own rule (`leaderboard_exemplar_draws`) and generated GSM8K with other stop strings and
  another answer check (tasks/suite.yaml, `protocols:`).
- `lm-eval` asks what lm-eval 0.4's own task definitions ask (its seeded few-shot sampler, its GSM8K).

This module is pure (no lm-eval): the rule, and the fingerprint of a task's requests. The lm-eval side,
the sampler that hands these draws to lm-eval, is evalsuite/engine/fewshot.py.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from evalsuite.errors import SuiteConfigError, param

# b281b09 lm_eval/evaluator.py: `rnd = random.Random(); rnd.seed(42)`, one generator per task.
LEADERBOARD_SEED = 42


class Protocol(StrEnum):
    """What the model is asked: the leaderboard's own requests (its few-shot draws, GSM8K's stops and answer
    check), or lm-eval 0.4's task definitions."""

    LEADERBOARD_V1 = "leaderboard-v1"
    LM_EVAL = "lm-eval"


def parse_protocol(text: str) -> Protocol:
    try:
        return Protocol(text)
    except ValueError as e:
        choices = ", ".join(p.value for p in Protocol)
        raise SuiteConfigError(f"{param('protocol')} {text!r}: choose one of {choices}") from e


def leaderboard_exemplar_draws(eval_rows: int, pool_rows: int, draw: int) -> list[list[int]]:
    """For each eval document (by its index in Hub order), the pool rows the leaderboard's harness drew.

    b281b09 shuffled a task's eval documents with one Random(42), then walked them in that order, and for
    each document drew `rnd.sample(pool, draw)` from the same generator: a document's exemplars depend on
    where the walk met it and on every draw before. `random.sample` picks positions from the population's
    length alone, so drawing from `range(pool_rows)` gives the positions it drew from the pool's rows.
    """
    order = list(range(eval_rows))
    rnd = random.Random(LEADERBOARD_SEED)
    rnd.shuffle(order)
    draws: list[list[int]] = [[] for _ in range(eval_rows)]
    for document in order:
        draws[document] = rnd.sample(range(pool_rows), draw)
    return draws


@dataclass(frozen=True)
class DocumentRequests:
    """Everything one eval document asks the model, in lm-eval's request order.

    `requests` holds (context, continuation) for log-likelihood requests and (context, generation settings)
    for generation requests. `doc_id` is the document's index in the eval split in Hub order (MMLU: within
    its subject).
    """

    task: str  # the suite key (arc, ..., gsm8k)
    lm_eval_task: str
    doc_id: int
    requests: tuple[tuple[str, str | dict[str, Any]], ...]

    def to_json(self) -> str:
        record = {
            "task": self.task,
            "lm_eval_task": self.lm_eval_task,
            "doc_id": self.doc_id,
            "requests": [list(r) for r in self.requests],
        }
        return json.dumps(record, ensure_ascii=False)


def prompt_fingerprint(documents: Iterable[DocumentRequests]) -> str:
    """sha256 over every request of a task, document by document (Hub order): equal iff the model was asked
    the same things about the same documents."""
    digest = hashlib.sha256()
    for doc in sorted(documents, key=lambda d: (d.lm_eval_task, d.doc_id)):
        line = json.dumps([doc.lm_eval_task, doc.doc_id, doc.requests], ensure_ascii=False, sort_keys=True)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()
