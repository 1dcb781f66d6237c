"""A Hugging Face Hub stand-in on 127.0.0.1, for end-to-end tests of the real clients (huggingface_hub,
transformers, lm-eval) through `HF_ENDPOINT`.

No maintained package serves the Hub's API for tests (huggingface_hub's and datasets' own suites use the
hub-ci staging server; the mocks found replace `HfApi` in-process), so this is a small one. It serves what
the commands use and nothing more, records every request it receives, and listens on loopback only:

- model repos: `GET /api/models/<repo>[/revision/<rev>]` (id, sha, siblings), `GET /api/models/<repo>/tree/
  <rev>[/<folder>]` (entries, or 404 EntryNotFound), and
  `HEAD|GET /<repo>/resolve/<rev>/<file>` with the headers huggingface_hub reads (X-Repo-Commit, ETag,
  Content-Length; 404s carry X-Error-Code: RepoNotFound, RevisionNotFound or EntryNotFound);
- dataset repos: the same under `/api/datasets/` and `/datasets/<repo>/resolve/`;
- uploads: `POST /api/repos/create` (a new, empty repo; an existing one is a 409, as the Hub answers),
  `POST /api/validate-yaml` (a README's front matter must parse), `POST /api/{models,datasets}/<repo>/preupload/
  <rev>` (every file "regular") and
  `POST /api/{models,datasets}/<repo>/commit/<rev>[?create_pr=1]` (the ndjson commit; files kept as received). A commit
  whose header names a `parentCommit` that is not the branch's head is refused with 412, as the Hub refuses
  it; a commit to a branch (not a pull request) becomes the branch's new head, with the files it changed;
- failure modes for the tests of a Hub that is down or rate-limited: `fail_with(status)` answers every
  request with that status (429 with Retry-After); `before_commit`, a call made when a commit arrives and
  before it is judged (a co-author's commit landing meanwhile).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Revision:
    sha: str
    files: dict[str, bytes]


@dataclass
class Repo:
    revisions: dict[str, Revision] = field(default_factory=dict)  # branch name or sha -> revision
    # what uploads sent: {"create_pr", "files", "summary", "parent_commit", "accepted"}
    commits: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    authorization: str | None


class FakeHub:
    def __init__(self) -> None:
        self.models: dict[str, Repo] = {}
        self.datasets: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.failure: int | None = None
        self.before_commit: Callable[[], None] | None = None
        self._server: ThreadingHTTPServer | None = None

    # --- what the tests set up

    def publish_model(self, repo_id: str, folder: Path, branch: str = "main") -> str:
        """The folder's files as a new commit of model `repo_id` on `branch`; returns the commit sha."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self._publish(self.models, repo_id, files, branch)

    def publish_dataset(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """`files` (path in repo -> bytes) as a new commit of dataset `repo_id`; returns the commit sha."""
        return self._publish(self.datasets, repo_id, files, branch)

    def _publish(self, repos: dict[str, Repo], repo_id: str, files: dict[str, bytes], branch: str) -> str:
        repo = repos.setdefault(repo_id, Repo())
        sha = hashlib.sha1(repo_id.encode() + str(len(repo.revisions)).encode() + b"".join(files.values())).hexdigest()
        revision = Revision(sha, files)
        repo.revisions[branch] = revision
        repo.revisions[sha] = revision
        return sha

    def fail_with(self, status: int | None) -> None:
        """Answer every request with `status` (None: serve again)."""
        self.failure = status

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def count(self, method: str, contains: str) -> int:
        return sum(1 for r in self.requests if r.method == method and contains in r.path)

    # --- serving

    @contextmanager
    def serving(self) -> Iterator[FakeHub]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read `requests`
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        path = unquote(url.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) if method == "POST" else b""
        self.requests.append(Request(method, path, url.query, handler.headers.get("Authorization")))
        if self.failure is not None:
            extra = {"Retry-After": "1"} if self.failure == 429 else {}
            return _send(handler, method, self.failure, b'{"error": "unavailable"}', extra)
        parts = path.strip("/").split("/")
        if parts == ["api", "validate-yaml"] and method == "POST":  # the metadata check of a README upload
            return self._validate_yaml(handler, body)
        if parts == ["api", "repos", "create"] and method == "POST":
            return self._create(handler, body)
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            repos = self.models if parts[1] == "models" else self.datasets
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if not rest:
                return self._info(handler, method, repos, repo_id, "main")
            if rest[0] == "revision" and len(rest) >= 2:
                return self._info(handler, method, repos, repo_id, "/".join(rest[1:]))
            if rest[0] == "tree" and len(rest) >= 2:
                recursive = parse_qs(url.query).get("recursive") == ["true"]
                return self._tree(handler, method, repos, repo_id, rest[1], "/".join(rest[2:]), recursive)
            if rest[0] == "paths-info" and len(rest) >= 2 and method == "POST":
                return self._paths_info(handler, repos, repo_id, rest[1], body)
            if rest[0] == "preupload" and method == "POST":
                return self._preupload(handler, repos, repo_id, body)
            if rest[0] == "commit" and method == "POST":
                return self._commit(handler, repos, repo_id, "/".join(rest[1:]), parse_qs(url.query), body)
        if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
            return self._resolve(handler, method, self.datasets, "/".join(parts[1:3]), parts[4], "/".join(parts[5:]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(handler, method, self.models, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        _send(handler, method, 404, b'{"error": "not served by the fake Hub"}', {"X-Error-Code": "RepoNotFound"})

    def _revision(
        self, handler: BaseHTTPRequestHandler, method: str, repos: dict[str, Repo], repo_id: str, rev: str
    ) -> Revision | None:
        repo = repos.get(repo_id)
        if repo is None:
            _send(handler, method, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return None
        revision = repo.revisions.get(rev)
        if revision is None:
            _send(handler, method, 404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
        return revision

    def _info(
        self, handler: BaseHTTPRequestHandler, method: str, repos: dict[str, Repo], repo_id: str, rev: str
    ) -> None:
        revision = self._revision(handler, method, repos, repo_id, rev)
        if revision is None:
            return
        info = {
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": revision.sha, "private": False,
            "siblings": [{"rfilename": name} for name in sorted(revision.files)], "tags": [], "downloads": 0,
        }  # fmt: skip
        _send(handler, method, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _tree(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        repos: dict[str, Repo],
        repo_id: str,
        rev: str,
        folder: str,
        recursive: bool = False,
    ) -> None:
        """The entries under `folder` (the Hub's tree listing); 404 EntryNotFound if there are none."""
        revision = self._revision(handler, method, repos, repo_id, rev)
        if revision is None:
            return
        prefix = f"{folder}/" if folder else ""
        entries: dict[str, dict] = {}
        for name, content in revision.files.items():
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else 1):  # the folders on the way
                path = prefix + "/".join(parts[:depth])
                entries.setdefault(path, {"type": "directory", "path": path, "oid": revision.sha, "size": 0})
            if recursive or len(parts) == 1:
                entries[name] = _file_entry(name, content)
            else:
                path = prefix + parts[0]
                entries.setdefault(path, {"type": "directory", "path": path, "oid": revision.sha, "size": 0})
        if not entries:
            return _send(handler, method, 404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"})
        listing = json.dumps(sorted(entries.values(), key=lambda e: e["path"])).encode()
        _send(handler, method, 200, listing, {"Content-Type": "application/json"})

    def _paths_info(
        self, handler: BaseHTTPRequestHandler, repos: dict[str, Repo], repo_id: str, rev: str, body: bytes
    ) -> None:
        """The entries of the paths asked for that exist (files, or folders holding files)."""
        revision = self._revision(handler, "POST", repos, repo_id, rev)
        if revision is None:
            return
        fields = parse_qs(body.decode()) if not body.startswith(b"{") else json.loads(body)
        entries = []
        for path in fields.get("paths", []):
            if path in revision.files:
                entries.append(_file_entry(path, revision.files[path]))
            elif any(name.startswith(path.rstrip("/") + "/") for name in revision.files):
                entries.append({"type": "directory", "path": path, "oid": revision.sha, "size": 0})
        _send(handler, "POST", 200, json.dumps(entries).encode(), {"Content-Type": "application/json"})

    def _resolve(
        self, handler: BaseHTTPRequestHandler, method: str, repos: dict[str, Repo], repo_id: str, rev: str, name: str
    ) -> None:
        revision = self._revision(handler, method, repos, repo_id, rev)
        if revision is None:
            return
        if name not in revision.files:
            extra = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": revision.sha}
            return _send(handler, method, 404, b'{"error": "Entry not found"}', extra)
        content = revision.files[name]
        etag = '"' + hashlib.sha1(content).hexdigest() + '"'
        _send(handler, method, 200, content, {"X-Repo-Commit": revision.sha, "ETag": etag})

    def _validate_yaml(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        """The Hub parses a README's front matter before accepting it: YAML that does not parse is a 400."""
        import yaml

        content = json.loads(body).get("content", "")
        try:
            parts = content.split("---")
            yaml.safe_load(parts[1] if content.startswith("---") and len(parts) > 2 else "")
        except yaml.YAMLError as e:
            error = json.dumps({"error": f"YAML error: {e}"}).encode()
            return _send(handler, "POST", 400, error, {"Content-Type": "application/json"})
        _send(handler, "POST", 200, b'{"warnings": []}', {"Content-Type": "application/json"})

    def _create(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        asked = json.loads(body)
        repos = self.datasets if asked.get("type") == "dataset" else self.models
        repo_id = f"{asked['organization']}/{asked['name']}" if asked.get("organization") else asked["name"]
        if repo_id in repos:
            return _send(handler, "POST", 409, b'{"error": "You already created this repo"}', {})
        self._publish(repos, repo_id, {}, "main")
        answer = {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}
        _send(handler, "POST", 200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    def _preupload(self, handler: BaseHTTPRequestHandler, repos: dict[str, Repo], repo_id: str, body: bytes) -> None:
        if repo_id not in repos:
            return _send(handler, "POST", 404, b"{}", {"X-Error-Code": "RepoNotFound"})
        files = json.loads(body).get("files", [])
        answer = {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        _send(handler, "POST", 200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    def _commit(
        self,
        handler: BaseHTTPRequestHandler,
        repos: dict[str, Repo],
        repo_id: str,
        rev: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> None:
        repo = repos.get(repo_id)
        if repo is None or rev not in repo.revisions:
            return _send(
                handler, "POST", 404, b"{}", {"X-Error-Code": "RepoNotFound" if repo is None else "RevisionNotFound"}
            )
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        files = {
            item["value"]["path"]: base64.b64decode(item["value"]["content"])
            for item in lines
            if item.get("key") == "file"
        }
        header: dict[str, Any] = next((item["value"] for item in lines if item.get("key") == "header"), {})
        create_pr = query.get("create_pr") == ["1"]
        if self.before_commit is not None:
            self.before_commit()
        parent = header.get("parentCommit")
        accepted = parent is None or parent == repo.revisions[rev].sha
        repo.commits.append({"create_pr": create_pr, "files": files, "summary": header.get("summary"),
                             "parent_commit": parent, "accepted": accepted})  # fmt: skip
        if not accepted:
            error = b'{"error": "A commit has happened since. Please refresh and try again."}'
            return _send(handler, "POST", 412, error, {"Content-Type": "application/json"})
        oid = hashlib.sha1(body).hexdigest()
        if not create_pr:  # the branch moves to the new commit
            revision = Revision(oid, {**repo.revisions[rev].files, **files})
            repo.revisions[rev] = revision
            repo.revisions[oid] = revision
        number = len(repo.commits)
        answer = {
            "commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}",
            "commitOid": oid,
            "pullRequestUrl": f"{self.endpoint}/{repo_id}/discussions/{number}" if create_pr else None,
        }
        _send(handler, "POST", 200, json.dumps(answer).encode(), {"Content-Type": "application/json"})


def _file_entry(path: str, content: bytes) -> dict:
    return {"type": "file", "path": path, "oid": hashlib.sha1(content).hexdigest(), "size": len(content)}


def _send(handler: BaseHTTPRequestHandler, method: str, status: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if method != "HEAD":
        handler.wfile.write(body)


def h6_dataset_repos(data_dir: Path) -> dict[str, dict[str, bytes]]:
    """The six H6 datasets as their Hub repositories lay them out today (a dataset card whose `configs` name the
    parquet shards), built from an offline snapshot's rows (`<dir>/<split>.jsonl`). Splits the snapshot lacks
    (HellaSwag's train in ../shared/data/h6) are missing here too. MMLU gets a config per subject and `all`."""
    import io

    from datasets import Dataset

    from evalsuite.suite import load_suite

    repos: dict[str, dict[str, bytes]] = {}
    for spec in load_suite().tasks:
        layout = spec.data
        splits = {p.stem: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
                  for p in sorted((data_dir / layout.dir).glob("*.jsonl"))}  # fmt: skip
        configs: dict[str, dict[str, list[dict]]] = {}
        if layout.subset_column:  # MMLU: one config per subject, and `all`
            for split, rows in splits.items():
                configs.setdefault(layout.hub_all_config or "all", {})[split] = rows
                for subject in layout.subsets:
                    chosen = [r for r in rows if r[layout.subset_column] == subject]
                    if chosen:
                        configs.setdefault(subject, {})[split] = chosen
        else:
            configs[layout.hub_config or "default"] = splits
        files: dict[str, bytes] = {}
        card = ["---", "configs:"]
        for config, by_split in configs.items():
            folder = config if layout.hub_config or layout.subset_column else "data"
            card += [f"- config_name: {config}", "  data_files:"]
            for split, rows in by_split.items():
                buffer = io.BytesIO()
                Dataset.from_list(rows).to_parquet(buffer)
                files[f"{folder}/{split}-00000-of-00001.parquet"] = buffer.getvalue()
                card += [f"  - split: {split}", f"    path: {folder}/{split}-*"]
        files["README.md"] = "\n".join([*card, "---", ""]).encode()
        repos[layout.hub_dataset] = files
    return repos
