"""The leaderboard's few-shot exemplars inside lm-eval: a sampler lm-eval calls as it builds each request.

lm-eval stays the engine: its task templates format the exemplars and the document, its request builder
asks a sampler for each document's exemplars. `LeaderboardWalkSampler` answers with the draws of the
leaderboard's harness (evalsuite.suite.protocol.leaderboard_exemplar_draws) instead of lm-eval's seeded sampler.

lm-eval's request builder (`Task.build_all_requests`) does not say which document it wants exemplars for:
it walks the documents `doc_iterator` yields, in Hub order, and asks once per document. So evalsuite binds
the sampler, after loading the task and before lm-eval builds requests, to the eval split's size and the
documents lm-eval will visit (`--limit`: the first N, which needs nothing; a preset: its sorted subset),
and checks afterwards that lm-eval asked once per document (`check_visited`). Both lm-eval behaviours
are in tests/test_dependency_contract.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lm_eval.api.samplers import ContextSampler

from evalsuite.errors import RunError
from evalsuite.suite import leaderboard_exemplar_draws


class LeaderboardWalkSampler(ContextSampler):
    """Exemplars as the Open LLM Leaderboard's harness (lm-eval b281b09) drew them.

    When the pool is the eval split itself (evalsuite's documented fallback for a missing few-shot split;
    lm-eval then passes `eval_doc`), it follows b281b09's rule for tasks without a training split: draw
    one more than needed, drop the scored document, keep the first `n`.
    """

    def __init__(self, df: Sequence[dict[str, Any]] | None = None, *, rnd: int | None = None, **kwargs: Any) -> None:
        super().__init__(df, rnd=rnd, **kwargs)
        self._eval_rows: int | None = None
        self._visits: Sequence[int] = ()
        self._cursor = 0
        self._draws: dict[int, list[list[int]]] = {}  # draw size -> per eval document
        self._pool: list[dict[str, Any]] | None = None

    def bind(self, eval_rows: int, visits: Sequence[int] | None = None) -> None:
        """`visits`: the eval-document indices lm-eval will build, in order (None: 0, 1, 2, ...)."""
        self._eval_rows = eval_rows
        self._visits = visits if visits is not None else range(eval_rows)
        self._cursor = 0

    def set_rnd(self, rnd: int | None) -> LeaderboardWalkSampler:
        # lm-eval's few-shot seed does not apply: the walk is seeded with 42 as the leaderboard's was. lm-eval
        # sets the seed right before it builds a task's requests, so the walk starts again at the first visit.
        self._cursor = 0
        return self

    @property
    def visited(self) -> int:
        """Documents lm-eval asked exemplars for since it last set the seed."""
        return self._cursor

    def check_visited(self, documents: int, task: str) -> None:
        """After lm-eval built a task's requests: it must have asked for exemplars once per document."""
        if self.visited != documents:
            raise RunError(
                f"{task}: lm-eval asked for exemplars {self.visited} times for {documents} documents, so the "
                "leaderboard's exemplars may be on the wrong documents; this lm-eval version is not supported"
            )

    def sample(
        self, n: int, eval_doc: dict[str, Any] | None = None, df: Sequence[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Sequence[dict[str, Any]]:
        if self._eval_rows is None:
            raise RunError("the leaderboard-v1 few-shot sampler was used before evalsuite bound it to its documents")
        position = self._cursor
        self._cursor += 1
        if position >= len(self._visits):
            raise RunError(
                f"lm-eval asked for exemplars {self._cursor} times, for {len(self._visits)} eval documents: the "
                "leaderboard's exemplars can no longer be placed (see tests/test_dependency_contract.py)"
            )
        if self._pool is None:
            self._pool = self.fewshot_docs()
        pool = self._pool
        draw = n + 1 if eval_doc is not None else n
        if draw not in self._draws:
            self._draws[draw] = leaderboard_exemplar_draws(self._eval_rows, len(pool), draw)
        exemplars = [pool[i] for i in self._draws[draw][self._visits[position]]]
        if eval_doc is not None:
            exemplars = [x for x in exemplars if x != eval_doc][:n]
        return exemplars
