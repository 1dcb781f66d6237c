"""Logging set-up (called once by the CLI's root command): by default only evalsuite speaks on stderr."""

from __future__ import annotations

import logging
import os
import sys
import warnings


class _OncePerMessage(logging.Filter):
    """lm-eval repeats some warnings for every task evalsuite runs (the chat-template hint): show each once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("lm_eval"):
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


# "ContinuousBatchingLogger": transformers' continuous batching (GSM8K's generation) logs under that name, with
# a handler of its own, outside the "transformers" logger
_LIBRARY_LOGGERS = (
    "lm_eval", "transformers", "ContinuousBatchingLogger", "datasets", "huggingface_hub", "accelerate", "torch",
    "httpx", "urllib3", "torchao", "logbar", "bitsandbytes", "torch.utils._pytree",
)  # fmt: skip


_quieted: dict[str, list] = {}  # what quieting changed, to undo it when a command asks for -v after all


def setup_logging(verbose: bool = False) -> None:
    """Logs go to stderr. By default only evalsuite speaks (its messages, its bars, warnings and errors);
    `-v` or EVALSUITE_LOG_LEVEL=INFO/DEBUG also lets lm-eval, transformers and datasets speak."""
    level = os.environ.get("EVALSUITE_LOG_LEVEL", "INFO" if verbose else "WARNING").upper()
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if not any(isinstance(f, _OncePerMessage) for f in handler.filters):
            handler.addFilter(_OncePerMessage())
    _quiet_libraries(not root.isEnabledFor(logging.INFO))


def _quiet_libraries(quiet: bool) -> None:
    """Their loggers and Python warnings (their bars: evalsuite/cli/verbosity.py, before they are imported)."""
    if quiet and not _quieted:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        _quieted["warnings"] = list(warnings.filters)
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
    elif not quiet and _quieted:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        warnings.filters[:] = _quieted.pop("warnings")  # type: ignore[index]  # a list (typeshed: Sequence)
