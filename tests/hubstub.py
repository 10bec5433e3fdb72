"""A local stand-in for the Hugging Face Hub, enough for huggingface_hub's download and upload paths.

Repos live in memory as ``{repo_id: {revision: {path: bytes}}}``; a commit creates a
new revision (a 40-hex id) and moves ``main``. Served on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []

    def put(self, repo_id: str, files: dict[str, bytes], revision: str | None = None) -> str:
        """Commit ``files`` onto main (or onto branch ``revision``, created from main) and return the commit id."""
        revisions = self.repos.setdefault(repo_id, {})
        base = dict(revisions.get(revision or "main", revisions.get("main", {})))
        base.update(files)
        commit = hashlib.sha1(
            json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in base.items())).encode()
            + str(len(revisions)).encode()
        ).hexdigest()
        revisions[commit] = base
        revisions[revision or "main"] = base
        return commit

    def commit_of(self, repo_id: str, revision: str) -> str | None:
        revisions = self.repos.get(repo_id, {})
        target = revisions.get(revision)
        if target is None:
            return None
        for key, files in revisions.items():
            if len(key) == 40 and files is target:
                return key
        return None


class _Handler(BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head=False
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _resolve(self, head: bool) -> None:
        self.state.requests.append((self.command, self.path))
        path = unquote(self.path.split("?")[0]).lstrip("/")
        if path.startswith("models/"):
            path = path[len("models/") :]
        try:
            before, after = path.split("/resolve/", 1)
            revision, filename = after.split("/", 1)
        except ValueError:
            return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
        repo_id = before
        commit = self.state.commit_of(repo_id, revision)
        if repo_id not in self.state.repos:
            return self._send(404, b"repo not found", {"X-Error-Code": "RepoNotFound"}, head)
        if commit is None:
            return self._send(404, b"revision not found", {"X-Error-Code": "RevisionNotFound"}, head)
        files = self.state.repos[repo_id][commit]
        if filename not in files:
            return self._send(
                404, b"entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head
            )
        body = files[filename]
        etag = '"' + hashlib.sha256(body).hexdigest() + '"'
        self._send(
            200,
            body,
            {"ETag": etag, "X-Repo-Commit": commit, "Content-Type": "application/octet-stream"},
            head,
        )

    def _validate_yaml(self, content: str) -> None:
        """The Hub checks a README's front matter before an upload; here: it must parse to a mapping."""
        import yaml

        errors = []
        if content.startswith("---\n"):
            head, sep, _ = content[4:].partition("\n---\n")
            try:
                meta = yaml.safe_load(head) if sep else None
            except yaml.YAMLError as exc:
                meta, errors = None, [{"message": f"invalid YAML: {exc}"}]
            if not errors and not isinstance(meta, dict):
                errors = [{"message": "front matter is not a closed YAML mapping"}]
        if errors:
            return self._send(
                400, json.dumps({"errors": errors}).encode(), {"Content-Type": "application/json"}
            )
        return self._json(200, {"errors": [], "warnings": []})

    def do_HEAD(self) -> None:  # noqa: N802
        self._resolve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._resolve(head=False)

    def do_POST(self) -> None:  # noqa: N802
        self.state.requests.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = unquote(self.path.split("?")[0])
        if path == "/api/repos/create":
            payload = json.loads(body or b"{}")
            repo_id = (
                f"{payload['organization']}/{payload['name']}"
                if payload.get("organization")
                else payload["name"]
            )
            self.state.repos.setdefault(repo_id, {})
            return self._json(200, {"url": f"http://127.0.0.1/{repo_id}", "repo_id": repo_id})
        if path.startswith("/api/models/") and "/preupload/" in path:
            files = json.loads(body or b"{}").get("files", [])
            return self._json(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}").get("content", ""))
        if path.startswith("/api/models/") and "/branch/" in path:
            repo_id, branch = path[len("/api/models/") :].split("/branch/", 1)
            if repo_id not in self.state.repos:
                return self._send(404, b"repo not found", {"X-Error-Code": "RepoNotFound"})
            if branch in self.state.repos[repo_id]:
                return self._send(409, b"branch already exists")
            self.state.put(repo_id, {}, branch)
            return self._json(200, {})
        if path.startswith("/api/models/") and "/commit/" in path:
            repo_id, revision = path[len("/api/models/") :].split("/commit/", 1)
            files = {}
            for line in body.splitlines():
                item = json.loads(line)
                if item.get("key") == "file":
                    value = item["value"]
                    files[value["path"]] = base64.b64decode(value["content"])
            commit = self.state.put(repo_id, files, None if revision == "main" else revision)
            return self._json(
                200, {"commitUrl": f"http://127.0.0.1/{repo_id}/commit/{commit}", "commitOid": commit}
            )
        self._send(404, b"unknown endpoint")


class HubStub:
    """Run the stand-in in a background thread; ``url`` goes into HF_ENDPOINT."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
