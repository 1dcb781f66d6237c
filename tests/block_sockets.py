"""Run the evalsuite command with every internet connection and name lookup refused, each one recorded.

    python tests/block_sockets.py LOG evalsuite-args...

LOG gets one JSON line per attempt (what was asked, and the stack that asked), for a test to assert on.
"""

import json
import socket
import sys
import traceback
from typing import Any

LOG = sys.argv[1]


def _record(kind: str, target: object) -> None:
    with open(LOG, "a") as f:
        f.write(json.dumps({"kind": kind, "target": repr(target), "stack": traceback.format_stack()[:-2]}) + "\n")


_connect = socket.socket.connect


def _blocked_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record("connect", address)
        raise ConnectionRefusedError("internet sockets are blocked by this test")
    _connect(self, address)  # unix sockets (torch, multiprocessing) are not the network


def _blocked_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
    _record("getaddrinfo", host)
    raise socket.gaierror("name lookups are blocked by this test")


socket.socket.connect = _blocked_connect  # type: ignore[method-assign,assignment]
socket.getaddrinfo = _blocked_getaddrinfo

from evalsuite.cli import main  # noqa: E402  (after the patch: nothing may connect while importing either)

sys.argv = ["evalsuite", *sys.argv[2:]]
main()
