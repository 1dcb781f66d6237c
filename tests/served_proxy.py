"""A small HTTP proxy on 127.0.0.1 in front of a real inference server, for the served backend's fault tests: it
forwards every request as it is and, when told to, answers in the server's place the way a loaded or dying
server, another model or another server program would (429/503 with Retry-After, a cut connection, a 401, a
shorter context, a /tokenize that splits otherwise, no prompt log-probabilities). It counts the completion
prompts it forwarded, so a test can say that nothing was asked twice.

Only loopback: it binds 127.0.0.1 and forwards to the server's 127.0.0.1 address.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Faults:
    """What the proxy does instead of forwarding (each counter runs down as completion requests come)."""

    status: int | None = None  # answer completion requests with this status (429, 503) ...
    status_times: int = 0  # ... this many times
    status_from: int = 0  # ... once this many were forwarded (1: after the load's probe, on scoring requests)
    retry_after: str | None = None
    cut_after: int | None = None  # forward this many completion requests, then cut every connection
    key: str | None = None  # a key the server asks for (401 without it)
    max_model_len: int | None = None  # what /v1/models says
    shift_tokenize: bool = False  # /tokenize answers one token more
    no_prompt_logprobs: bool = False  # 400 for echoed log-probabilities, as a server without them


@dataclass
class Proxy:
    upstream: str  # http://127.0.0.1:PORT (the server's root)
    server: ThreadingHTTPServer
    faults: Faults = field(default_factory=Faults)
    prompts: int = 0  # completion prompts forwarded
    completions: int = 0  # completion requests forwarded
    refused: int = 0  # completion requests answered with `faults.status`
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reset(self) -> None:
        with self.lock:
            self.faults, self.prompts, self.completions, self.refused = Faults(), 0, 0, 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_proxy(upstream: str) -> Proxy:
    proxy: Proxy

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._handle(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._handle(self.rfile.read(length))

        def _handle(self, body: bytes | None) -> None:
            faults = proxy.faults
            if faults.key is not None and self.headers.get("Authorization") != f"Bearer {faults.key}":
                return self._answer(401, {"error": {"message": "invalid API key"}})
            completion = self.path.endswith("/completions")
            if completion:
                sent = json.loads(body or b"{}")
                with proxy.lock:
                    refusing = proxy.refused < faults.status_times and proxy.completions >= faults.status_from
                    if faults.status is not None and refusing:
                        proxy.refused += 1
                        headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
                        return self._answer(faults.status, {"error": {"message": "busy"}}, headers)
                    if faults.cut_after is not None and proxy.completions >= faults.cut_after:
                        self.close_connection = True
                        self.connection.close()  # the server went away mid-run
                        return None
                    if faults.no_prompt_logprobs and sent.get("echo"):
                        return self._answer(400, {"error": {"message": "prompt_logprobs is not supported"}})
                    proxy.completions += 1
                    prompt = sent.get("prompt")
                    proxy.prompts += len(prompt) if isinstance(prompt, list) and prompt and isinstance(
                        prompt[0], list) else 1  # fmt: skip
            status, answer = _forward(proxy.upstream + self.path, body, self.command)
            if self.path.endswith("/v1/models") and faults.max_model_len is not None:
                for model in answer.get("data", []):
                    model["max_model_len"] = faults.max_model_len
            if self.path.endswith("/tokenize") and faults.shift_tokenize and status == 200:
                answer["tokens"] = [answer["tokens"][0], *answer["tokens"]]
            self._answer(status, answer)
            return None

        def _answer(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy = Proxy(upstream.rstrip("/"), server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return proxy


def _forward(url: str, body: bytes | None, method: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, {"error": {"message": text.decode("utf-8", "replace")}}
