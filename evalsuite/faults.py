"""Named instants at which a test may kill the process, to prove that a run killed there resumes (a failpoint, as
databases have them): with `EVALSUITE_KILL_AT=<instant>` in the environment, the process sends itself SIGKILL
when it reaches that instant (`<instant>#<n>`: the n-th time; `<instant>:SIGINT`: Ctrl-C instead, `:SIGINT:2`:
Ctrl-C and a second one 0.2 s later). Unset, `reached` is one dictionary lookup.

The instants, in a run's order (tests/test_faults.py kills a real run at each):

    dequantizing         a GGUF's float32 copy is written in the cache's staging folder, not yet renamed
    model-loaded         the model is loaded; nothing of the run is saved yet
    answers-cached       some of a task's answers are in lm-eval's request cache, the task is not finished
    replacing <name>     a file's new text is written beside it, not yet renamed over it (<name>: its file name)
    task-saved           a task's record is saved in the checkpoint
    staging <name>       the run folder is being staged; <name> (results.json) is not written yet
    staged               the run folder is staged in full, not yet renamed into place
    renamed              the run folder is in place; the checkpoint is not yet removed
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "EVALSUITE_KILL_AT"

_reached: dict[str, int] = {}


def reached(instant: str) -> None:
    """Kill this process here if the environment names this instant (and this is the time it names)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    where, _, how = wanted.partition(":")
    name, _, nth = where.partition("#")
    if name != instant:
        return
    _reached[instant] = _reached.get(instant, 0) + 1
    if _reached[instant] != (int(nth) if nth else 1):
        return
    if not how:
        os.kill(os.getpid(), signal.SIGKILL)
    signal_name, _, times = how.partition(":")
    number = signal.Signals[signal_name]
    for later in range(1, int(times or 1)):
        threading.Timer(0.2 * later, os.kill, (os.getpid(), number)).start()
    os.kill(os.getpid(), number)
