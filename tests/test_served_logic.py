"""The served backend's own logic without a server (the real vLLM server: tests/test_served.py): its options, how
an echoed prompt's log-probabilities become (log-likelihood, is-greedy), and Retry-After."""

from __future__ import annotations

import email.utils
import time

import pytest

from evalsuite.engine.backends import get_backend
from evalsuite.errors import OptionError


def _logprobs(values: list[float | None], tokens: list[int], tops: list[dict[int, float] | None]) -> dict:
    return {
        "token_logprobs": values,
        "tokens": [f"token_id:{t}" for t in tokens],
        "top_logprobs": [None if top is None else {f"token_id:{k}": v for k, v in top.items()} for top in tops],
    }


def test_an_echoed_prompt_scores_its_continuation_and_says_whether_it_was_greedy() -> None:
    from evalsuite.engine.backends.served import _score

    # prompt 10 11 | 12 13, then the generated token 99 (ignored)
    greedy = _logprobs([None, -1.0, -0.5, -0.25, -3.0], [10, 11, 12, 13, 99],
                       [None, {11: -1.0}, {12: -0.5}, {13: -0.25}, {99: -3.0}])  # fmt: skip
    assert _score(greedy, 2, 4) == (-0.75, True)
    second = _logprobs([None, -1.0, -2.0, -0.25, -3.0], [10, 11, 12, 13, 99],
                       [None, {11: -1.0}, {12: -2.0, 7: -0.1}, {13: -0.25}, {99: -3.0}])  # fmt: skip
    assert _score(second, 2, 4) == (-2.25, False)
    from evalsuite.errors import RunError

    with pytest.raises(RunError, match="fewer prompt log-probabilities"):
        _score(_logprobs([None, -1.0], [10, 11], [None, {11: -1.0}]), 1, 3)


def test_retry_after_is_seconds_or_a_date() -> None:
    from evalsuite.engine.backends.served import _retry_after

    assert _retry_after("2") == 2.0 and _retry_after(None) is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (_retry_after(later) or 0) <= 30


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("url=ftp://host/v1", "url=ftp://host/v1: give the server's API as http://HOST:PORT/v1"),
        ("url=http://user:pw@127.0.0.1:8000/v1", "no credentials in the URL: put the key in a variable"),
        ("url=http://127.0.0.1:8000/v1,concurrency=0", "concurrency=0: give 1 or more requests in flight"),
        ("url=http://127.0.0.1:8000/v1,timeout=0", "timeout=0: give a positive number of seconds"),
        ("url=http://127.0.0.1:8000/v1,model=x", "'model' is not an option of backend served"),
        ("concurrency=2", "backend served needs the server: backend_options url=http://HOST:PORT/v1"),
    ],
)
def test_the_served_options_are_checked_before_anything_loads(options: str, says: str) -> None:
    from evalsuite.engine import parse_key_values

    with pytest.raises(OptionError, match=says.replace("(", r"\(").replace(")", r"\)")):
        get_backend("served").parse_options(parse_key_values(options, "backend_options"))
