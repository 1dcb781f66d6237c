"""The `served` backend: a model behind an inference server's OpenAI-compatible completions API (vLLM above all).

evalsuite loads MODEL's tokenizer only, never its weights, and builds the leaderboard's requests exactly as for a
local run: lm-eval's TemplateLM splits each (context, continuation) into tokens with HFLM's own rules
(`tok_encode` below is HFLM's: no BOS unless asked, trailing spaces moved to the continuation), so the token ids
sent are the ones a local run forwards (`evalsuite prompts` is unchanged). The numbers are the server's engine's:
- a log-likelihood is the sum of the server's prompt log-probabilities over the continuation's tokens, from
  `/v1/completions` with the token ids as the prompt, `echo`, `logprobs: 1`, `max_tokens: 1` (the one generated
  token is ignored), several prompts per request (`--batch-size`), `concurrency` requests at once; is-greedy:
  each continuation token is the server's top-1 there (`return_tokens_as_token_ids`, so tokens compare by id);
- GSM8K's greedy generations come from `/v1/completions` with the task's stops and length, temperature 0, then
  lm-eval's own clean-up and filters.

Before anything is scored, one line each: nothing answers at the URL; the server serves another model
(`/v1/models`); it returns no prompt log-probabilities (a probe); 401/403 (the key's variable, never the key).
Before each task's first request: a probe of the task's own prompts through the server's `/tokenize` against the
local tokenizer (where the server has one), and every request's length against the server's `max_model_len`
(never truncated: the task and the tokens are named).

Faults: 429 and 503 wait (Retry-After honoured, bounded) and try again; a server that stops answering or cuts
the connection ends the run with one line, every answer so far kept in lm-eval's request cache, so the same
command resumes once the server is back without asking again; each request has a timeout (option `timeout`).

Peers: lm-eval's `local-completions` sends the same echo request; its defaults left-truncate at 2048 tokens
silently, send one request at a time and do not retry 429; a client/server tokenizer mismatch shifts the
context/continuation boundary (its docs/API_guide.md). Only the stdlib's HTTP client is used here.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval.api.model import TemplateLM
from pydantic import Field, field_validator

from evalsuite.engine.backends import BackendOptions, LoadedModel, ModelBackend, ModelSettings
from evalsuite.errors import OptionError, RunError, param
from evalsuite.model import LoadableModel
from evalsuite.settings import WeightType

# 429/503: at most this many tries of one request, each wait at most RETRY_MAX_WAIT_S (Retry-After is honoured
# up to it); the total wait of one request stays under a few minutes.
RETRY_TRIES = 8
RETRY_MAX_WAIT_S = 30.0
RETRY_FIRST_WAIT_S = 0.5
TOKENIZER_PROBES = 3  # prompts of each task whose tokens are compared with the server's /tokenize
LOGPROBS_OPTION = "vLLM: --max-logprobs 1 or more (the default 20 does)"


class ServedOptions(BackendOptions):
    url: str | None = Field(None, description="the server's OpenAI-compatible API, http://HOST:PORT/v1")
    api_key_env: str | None = Field(None, description="the environment variable holding the server's API key")
    served_name: str | None = Field(
        None, description="the model's name on the server (its /v1/models id), when it is not MODEL"
    )
    concurrency: int = Field(4, description="requests in flight at once")
    timeout: float = Field(600.0, description="seconds one request may take before the run stops, saying so")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("give the server's API as http://HOST:PORT/v1")
        if parsed.username or parsed.password:
            raise ValueError("no credentials in the URL: put the key in a variable and give api_key_env=VAR")
        return value.rstrip("/")

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if value < 1:
            raise ValueError("give 1 or more requests in flight")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("give a positive number of seconds")
        return value


def _option(name: str, value: object) -> str:
    return f"{param('backend_options')} {name}={value}"


class ServerError(Exception):
    """The server answered with an HTTP error that waiting does not cure (not 429/503)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")


class ServerGone(Exception):
    """Nothing answers any more: the connection was refused or cut, or a request timed out."""


@dataclass
class ServerClient:
    """JSON over HTTP to one server: `url` is its OpenAI API (…/v1); `/tokenize` and `/version` are at its root."""

    url: str
    api_key_env: str | None = None
    timeout: float = 600.0

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise OptionError(f"{_option('api_key_env', self.api_key_env)}: the variable is not set; set it to "
                                  "the server's API key")  # fmt: skip
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def get(self, path: str, root: bool = False) -> Any:
        return self._call("GET", (self.root if root else self.url) + path, None)

    def post(self, path: str, body: dict[str, Any], root: bool = False) -> Any:
        return self._call("POST", (self.root if root else self.url) + path, body)

    def _call(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        wait_s = RETRY_FIRST_WAIT_S
        for attempt in range(1, RETRY_TRIES + 1):
            request = urllib.request.Request(url, data=data, method=method, headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as e:
                text = e.read().decode("utf-8", "replace")
                if e.code in (401, 403):
                    who = f"the key in {self.api_key_env}" if self.api_key_env else "a request without a key"
                    fix = "check the key" if self.api_key_env else f"give {_option('api_key_env', 'VAR')}"
                    raise OptionError(f"the server at {self.url} refused {who} (HTTP {e.code}); {fix}") from e
                if e.code not in (429, 503) or attempt == RETRY_TRIES:
                    raise ServerError(e.code, text) from e
                time.sleep(min(RETRY_MAX_WAIT_S, _retry_after(e.headers.get("Retry-After")) or wait_s))
                wait_s = min(RETRY_MAX_WAIT_S, wait_s * 2)
            except TimeoutError as e:
                raise ServerGone(f"no answer within {self.timeout:g}s (backend option timeout=)") from e
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, TimeoutError):
                    raise ServerGone(f"no answer within {self.timeout:g}s (backend option timeout=)") from e
                raise ServerGone(getattr(reason, "strerror", None) or str(reason) or type(e).__name__) from e
        raise AssertionError("unreachable: the last try raises")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class ServedModel:
    """What the checks found on the server, recorded in results.json (settings.model_args)."""

    name: str  # the id requests name
    max_model_len: int | None
    version: str | None  # vLLM's /version


class ServedBackend(ModelBackend):
    name = "served"
    summary = (
        "a model behind an OpenAI-compatible completions server (vLLM): the leaderboard's requests, the server's "
        "numbers"
    )
    options = ServedOptions
    hflm_exact = False
    not_exact_because = "its numbers are the server's engine's, not lm-eval HFLM's (its requests are the leaderboard's)"

    def parse_options(self, given: Mapping[str, Any], flag: str = "backend_options") -> BackendOptions:
        options = super().parse_options(given, flag)
        _url(options)  # before anything loads: the server is the whole point
        return options

    def where(self, settings: ModelSettings) -> str | None:
        return f"served at {_url(self.options_of(settings))}"

    def load(self, model: LoadableModel, settings: ModelSettings) -> LoadedModel:
        from transformers import AutoTokenizer

        options = self.options_of(settings)
        assert isinstance(options, ServedOptions)
        url = _url(options)
        if settings.precision is not None and settings.precision.quantized:
            raise OptionError(f"{param('precision')} {settings.precision}: a served model is quantized where the "
                              "server loads it (vLLM --quantization); drop it")  # fmt: skip
        if settings.weight_type is not WeightType.ORIGINAL:
            raise OptionError(f"{param('backend')} served: an adapter or a delta is loaded by the server (vLLM "
                              "--lora-modules); serve the merged model, or give it as MODEL")  # fmt: skip
        started = time.perf_counter()
        client = ServerClient(url, options.api_key_env, options.timeout)
        tokenizer = AutoTokenizer.from_pretrained(model.pretrained, revision=model.revision)
        served = check_server(client, model, options.served_name, tokenizer, settings.add_bos_token)
        rows = settings.batch_size.rows or 8  # prompts per request; auto: 8
        lm = ServedLM(client, served, tokenizer, rows, options.concurrency, settings.add_bos_token)
        return LoadedModel(
            lm=lm,
            model_args={"pretrained": model.pretrained, "revision": model.revision, "url": url,
                        "served_model": served.name, "server_version": served.version,
                        "max_model_len": served.max_model_len},  # fmt: skip
            device=f"server {url}",
            parameters=None,
            dtype=settings.dtype,
            load_seconds=round(time.perf_counter() - started, 3),
            backend=self.name,
        )


def _url(options: BackendOptions) -> str:
    """The server's URL from the backend's options; none given is one line."""
    assert isinstance(options, ServedOptions)
    if options.url is None:
        raise OptionError(f"{param('backend')} served needs the server: {_option('url', 'http://HOST:PORT/v1')}")
    return options.url


def check_server(
    client: ServerClient, model: LoadableModel, served_name: str | None, tokenizer: Any, add_bos: bool
) -> ServedModel:
    """The checks before anything is scored, one line each: something answers, it serves this model, it gives
    prompt log-probabilities."""
    try:
        listed = client.get("/models")
    except ServerGone as e:
        raise OptionError(f"{_option('url', client.url)}: nothing answers there ({e}); start the server or check "
                          "the URL") from e  # fmt: skip
    except ServerError as e:
        raise OptionError(f"{_option('url', client.url)}: not an OpenAI-compatible API (GET /models: {e})") from e
    entries = [m for m in (listed or {}).get("data", []) if isinstance(m, dict) and "id" in m]
    ids = [str(m["id"]) for m in entries]
    found = next((m for m in entries if _serves(str(m["id"]), model, served_name)), None)
    if found is None:
        given = f"served_name {served_name}" if served_name else f"MODEL {model.ref.model_id}"
        raise OptionError(
            f"the server at {client.url} serves {', '.join(ids) or 'no model'}, not {given}; point MODEL at the "
            f"served model, or give {_option('served_name', ids[0] if ids else 'NAME')} if it is the same model"
        )
    name = str(found["id"])
    max_len = found.get("max_model_len")
    version = None
    try:
        version = (client.get("/version", root=True) or {}).get("version")
    except (ServerError, ServerGone):
        pass  # not vLLM: no version to record
    probe = tokenizer.encode("The capital of France is Paris.", add_special_tokens=add_bos)
    try:
        answer = client.post("/completions", _echo_body(name, [probe]))
        logprobs = answer["choices"][0]["logprobs"]
        ok = len(logprobs["token_logprobs"]) >= len(probe) and logprobs["token_logprobs"][1] is not None
    except ServerError as e:
        raise OptionError(
            f"the server at {client.url} gives no prompt log-probabilities ({e}), which scoring multiple choice "
            f"needs: {LOGPROBS_OPTION}; TGI, llama.cpp's server and Ollama cannot score it"
        ) from e
    except ServerGone as e:
        raise RunError(f"the server at {client.url} stopped answering ({e}); start it again") from e
    except (KeyError, IndexError, TypeError):  # an answer without them
        ok = False
    if not ok:
        raise OptionError(
            f"the server at {client.url} returned no prompt log-probabilities for an echoed prompt, which scoring "
            f"multiple choice needs: {LOGPROBS_OPTION}; TGI, llama.cpp's server and Ollama cannot score it"
        )
    return ServedModel(name, int(max_len) if isinstance(max_len, int) else None, version)


def _serves(listed: str, model: LoadableModel, served_name: str | None) -> bool:
    """Whether a /v1/models id is the model asked for: `served_name` exactly when given; else MODEL as given,
    its Hub id, or a folder of the same name (vLLM lists a model by the path it loaded; a dequantized GGUF's
    cache folder is named by the file's sha256, so the same name is the same weights wherever the cache is)."""
    if served_name is not None:
        return listed == served_name
    names = {model.ref.model_id, model.ref.location, str(model.pretrained)}
    if listed.rstrip("/") in {n.rstrip("/") for n in names}:
        return True
    local = [n for n in (model.ref.location, str(model.pretrained)) if n.startswith("/")]
    return listed.startswith("/") and any(Path(listed).name == Path(n).name for n in local)


def _echo_body(name: str, prompts: Sequence[Sequence[int]]) -> dict[str, Any]:
    return {"model": name, "prompt": [list(p) for p in prompts], "max_tokens": 1, "echo": True, "logprobs": 1,
            "temperature": 0, "return_tokens_as_token_ids": True}  # fmt: skip


def _token_id(token: str) -> int | None:
    """A token as vLLM names it under `return_tokens_as_token_ids`: `token_id:123`."""
    prefix, _, number = token.partition(":")
    return int(number) if prefix == "token_id" and number.isdigit() else None


class ServedLM(TemplateLM):
    """lm-eval's LM over the server: TemplateLM's tokenization (HFLM's rules, MODEL's tokenizer), the server's
    log-probabilities and greedy completions."""

    backend = "causal"

    def __init__(
        self, client: ServerClient, served: ServedModel, tokenizer: Any, rows: int, concurrency: int, add_bos: bool
    ) -> None:
        super().__init__()
        self.client, self.served, self.tokenizer = client, served, tokenizer
        self.rows, self.concurrency, self.add_bos_token = rows, concurrency, add_bos
        self._task: str | None = None

    # HFLM's token rules (lm_eval/models/huggingface.py): the ids a local run forwards
    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return int(bos if bos is not None else self.tokenizer.eos_token_id)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix

        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        return list(self.tokenizer.encode(string, **special))

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        from evalsuite.progress import bar_open

        self._task = requests[0].task_name if requests else None
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or bar_open())

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        raise RunError(f"{param('backend')} served scores no rolling log-likelihoods (no H6 task asks for them)")

    def _loglikelihood_tokens(
        self, requests: list[tuple[tuple[str, str], list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        from evalsuite.progress import requests as requests_progress

        task = self._task or "this task"
        prompts = [(context + continuation, len(context)) for _, context, continuation in requests]
        self._check_lengths(task, [len(p) for p, _ in prompts], "log-likelihood request")
        self._check_tokenizer(task, [context + continuation for (context, continuation), _, _ in requests])
        waiting: dict[tuple[int, ...], list[int]] = {}  # each distinct prompt once: the requests that share it
        for index, (prompt, _) in enumerate(prompts):
            waiting.setdefault(tuple(prompt), []).append(index)
        unique = list(waiting)
        chunks = [unique[i : i + self.rows] for i in range(0, len(unique), self.rows)]
        progress = requests_progress(total=len(requests), desc="Running loglikelihood requests", disable=disable_tqdm)
        results: list[tuple[float, bool] | None] = [None] * len(requests)

        def finished(chunk: list[tuple[int, ...]], choices: list[Any]) -> None:
            for prompt, choice in zip(chunk, choices, strict=True):
                for index in waiting[prompt]:
                    results[index] = answer = _score(choice, prompts[index][1], len(prompt))
                    self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
                    progress.update(1)

        self._send(chunks, self._echo, finished, task)
        progress.close()
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _echo(self, chunk: list[tuple[int, ...]]) -> list[Any]:
        answer = self.client.post("/completions", _echo_body(self.served.name, chunk))
        choices = sorted(answer["choices"], key=lambda c: c["index"])
        return [c["logprobs"] for c in choices]

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

        from evalsuite.progress import bar_open
        from evalsuite.progress import requests as requests_progress

        if not requests:
            return []
        task = requests[0].task_name or "this task"
        eos = self.tokenizer.decode(self.eot_token_id, skip_special_tokens=False)
        asks = []
        for request in requests:
            context, gen_kwargs = request.args
            kwargs = dict(normalize_gen_kwargs(dict(gen_kwargs), 256))  # HFLM's max_gen_toks default
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            if kwargs.get("do_sample"):
                raise RunError(f"{param('backend')} served decodes greedily only; {task} asks for sampling")
            asks.append((self.tok_encode(context, add_special_tokens=self.add_bos_token), until,
                         int(kwargs["max_gen_toks"])))  # fmt: skip
        self._check_lengths(task, [len(ids) + new for ids, _, new in asks], "generation (prompt and new tokens)")
        texts: list[str | None] = [None] * len(requests)
        progress = requests_progress(total=len(requests), desc="Running generate_until requests",
                                     disable=disable_tqdm or bar_open())  # fmt: skip

        def finished(chunk: list[int], answers: list[str]) -> None:
            for index, text in zip(chunk, answers, strict=True):
                texts[index] = text = postprocess_generated_text(text, asks[index][1], None)
                self.cache_hook.add_partial("generate_until", requests[index].args, text)
                progress.update(1)

        def generate(chunk: list[int]) -> list[str]:
            ids, until, new = asks[chunk[0]]
            body = {"model": self.served.name, "prompt": [list(ids)], "max_tokens": new, "temperature": 0,
                    "stop": until}  # fmt: skip
            answer = self.client.post("/completions", body)
            return [answer["choices"][0]["text"]]

        self._send([[i] for i in range(len(requests))], generate, finished, task)
        progress.close()
        return [t if t is not None else "" for t in texts]

    def _send(
        self, chunks: list[Any], call: Callable[[Any], list[Any]], finished: Callable[[Any, list[Any]], None], task: str
    ) -> None:
        """`call` on every chunk, `concurrency` at once; each answer handed to `finished` (in this thread) as it
        comes. A server that stops answering ends the task with one line; what was answered is kept."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending: dict[Future[list[Any]], Any] = {pool.submit(call, chunk): chunk for chunk in chunks}
            try:
                while pending:
                    ready, _ = wait(pending, return_when=FIRST_COMPLETED)  # each answer kept as it comes
                    failed = None
                    for future in ready:
                        chunk = pending.pop(future)
                        if future.exception() is not None:
                            failed = failed or future
                            continue
                        finished(chunk, future.result())
                    if failed is not None:  # the answers that came with it are kept first
                        failed.result()
            except BaseException as e:
                for future in pending:
                    future.cancel()
                self._flush_answers()
                if isinstance(e, ServerGone):
                    raise RunError(
                        f"the server at {self.client.url} stopped answering during {task} ({e}); the answers so far "
                        "are kept: start it again and run the same command to go on"
                    ) from e
                if isinstance(e, ServerError):
                    raise RunError(f"the server at {self.client.url} refused a request of {task} ({e})") from e
                raise

    def _flush_answers(self) -> None:
        """The answers so far on disk before the task gives up: lm-eval's request cache (a SqliteDict) commits in
        a thread of its own, and a run that fails takes its checkpoint away when the cache still looks empty."""
        dbdict = getattr(self.cache_hook, "dbdict", None)
        if dbdict is not None:
            dbdict.commit(blocking=True)

    def _check_lengths(self, task: str, lengths: list[int], what: str) -> None:
        limit = self.served.max_model_len
        if limit is None or not lengths or max(lengths) <= limit:
            return
        over = sum(length > limit for length in lengths)
        raise RunError(
            f"{task}: {over} {what}(s) need up to {max(lengths)} tokens, more than the server's max_model_len "
            f"{limit}; start the server with a longer context (vLLM --max-model-len {max(lengths)}): nothing is "
            "truncated"
        )

    def _check_tokenizer(self, task: str, texts: list[str]) -> None:
        """The server's tokenizer must split the task's own prompts as MODEL's does, or the context/continuation
        boundary moves (lm-eval's API guide): a probe of a few through its /tokenize, where it has one."""
        for text in list(dict.fromkeys(texts))[:TOKENIZER_PROBES]:
            mine = self.tok_encode(text)
            body = {"model": self.served.name, "prompt": text, "add_special_tokens": self.add_bos_token}
            try:
                theirs = self.client.post("/tokenize", body, root=True)["tokens"]
            except ServerError:
                return  # no /tokenize on this server: nothing to compare against
            except ServerGone as e:
                raise RunError(f"the server at {self.client.url} stopped answering ({e}); start it again") from e
            if list(theirs) != mine:
                at = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                          min(len(mine), len(theirs)))  # fmt: skip
                raise RunError(
                    f"{task}: the server's tokenizer splits the prompts otherwise than MODEL's ({len(theirs)} tokens "
                    f"against {len(mine)}, first difference at token {at}); serve MODEL's tokenizer (vLLM "
                    "--tokenizer), or give the served model as MODEL"
                )


def _score(logprobs: dict[str, Any], context_length: int, length: int) -> tuple[float, bool]:
    """(log-likelihood, is-greedy) of the prompt's tokens after its context, from an echoed prompt's
    log-probabilities (the last entry is the generated token: ignored)."""
    values = logprobs["token_logprobs"][context_length:length]
    tokens = logprobs["tokens"][context_length:length]
    tops = logprobs["top_logprobs"][context_length:length]
    if len(values) != length - context_length or any(v is None for v in values):
        raise RunError("the server returned fewer prompt log-probabilities than the prompt has tokens")
    # greedy: each token is the server's top-1 there (ids compared: `token_id:N`)
    greedy = all(not top or _token_id(max(top, key=top.__getitem__)) == _token_id(token)
                 for token, top in zip(tokens, tops, strict=True))  # fmt: skip
    return float(sum(values)), greedy


BACKEND = ServedBackend()
