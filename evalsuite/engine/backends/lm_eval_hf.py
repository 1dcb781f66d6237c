"""The `lm-eval-hf` backend: lm-eval's HF model (HFLM) itself, request by request, so that its numbers are
exactly plain lm-eval's. The only change: while evalsuite shows a task bar, HFLM's own bars are off and the
task bar counts each batch of requests once HFLM has answered all of it.

It cannot run data-parallel: lm-eval splits documents across processes, and each process then draws its
few-shot exemplars from its own random stream, so scores would change with the number of processes (lm-eval
issue #1719); the shared-prefix backend splits the forwards instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from evalsuite.engine.backends.hf import HFBackend, LoadsWeights
from evalsuite.progress import bar_open
from evalsuite.progress import requests as requests_progress

if TYPE_CHECKING:
    from lm_eval.api.model import LM

MODEL_NAME = "evalsuite-lm-eval-hf"  # lm-eval registry name


class LmEvalHFBackend(HFBackend):
    name = "lm-eval-hf"
    summary = "lm-eval's HF model itself, request by request: plain lm-eval's numbers"
    data_parallel = False
    hflm_exact = True
    reprobes_batch_size = True  # HFLM's own `auto:N`

    def lm_class(self) -> type[LM]:
        return ReportingHFLM


BACKEND = LmEvalHFBackend()


@register_model(MODEL_NAME)
class ReportingHFLM(LoadsWeights, HFLM):
    """lm-eval's HFLM unchanged, except that while evalsuite shows a task bar its own bars are off and the task
    bar counts each batch of requests when HFLM has answered all of it."""

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self._reported(super().loglikelihood, requests, disable_tqdm)

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        return self._reported(super().loglikelihood_rolling, requests, disable_tqdm)

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        return self._reported(super().generate_until, requests, disable_tqdm)

    @staticmethod
    def _reported(answer, requests: list, disable_tqdm: bool):
        if not bar_open():
            return answer(requests, disable_tqdm=disable_tqdm)
        counter = requests_progress(len(requests), "")
        out = answer(requests, disable_tqdm=True)
        counter.update(len(requests))
        return out
