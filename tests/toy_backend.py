"""A toy backend, registered by tests/test_backends.py: the proof that a new way to run a model is one file and one
registry line (`register_backend("toy", "toy_backend:BACKEND")`).

It answers lm-eval's requests without a model: a continuation's log-likelihood is `per_character` times its
length, and every generation is empty. Its numbers are not lm-eval HFLM's (`hflm_exact` is False), so no task
it runs can be marked as the leaderboard's.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM
from pydantic import Field

from evalsuite.engine.backends import BackendOptions, LoadedModel, ModelBackend, ModelSettings
from evalsuite.model import LoadableModel


class ToyOptions(BackendOptions):
    per_character: float = Field(-0.5, description="the log-likelihood of each character of a continuation")


class ToyLM(LM):
    def __init__(self, per_character: float) -> None:
        super().__init__()
        self.per_character = per_character

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return [(self.per_character * len(request.args[1]), False) for request in requests]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return [self.per_character * len(request.args[0]) for request in requests]

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        return ["" for _ in requests]


class ToyBackend(ModelBackend):
    name = "toy"
    summary = "no model: log-likelihoods from the continuation's length (tests only)"
    options = ToyOptions

    def load(self, model: LoadableModel, settings: ModelSettings) -> LoadedModel:
        options = self.options_of(settings)
        assert isinstance(options, ToyOptions)
        return LoadedModel(
            lm=ToyLM(options.per_character),
            model_args={"pretrained": model.pretrained},
            device=settings.device,
            parameters=None,
            dtype=settings.dtype,
            load_seconds=0.0,
            backend=self.name,
        )


BACKEND = ToyBackend()
