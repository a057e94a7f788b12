"""A fake Hugging Face Hub on loopback, for pull tests (the real Hub is not reachable here).

It answers what ``huggingface_hub`` asks, in the Hub's own shapes:

- ``GET /api/models/{repo}/revision/{rev}?blobs=true``: the repo's files with size and LFS sha256;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: 302 to a "CDN" (the same server under the name
  ``localhost``, another host to the client, as the real CDN is) carrying X-Repo-Commit,
  X-Linked-Etag (the sha256) and X-Linked-Size, like the Hub's LFS redirects;
- ``GET /cdn/{repo}/{path}``: the bytes, honouring ``Range`` (206 + Content-Range).

Errors are the Hub's too: 401 with ``X-Error-Code: GatedRepo`` for a gated repo without an accepted
token, 404 ``RepoNotFound``. Faults are injected per file: cut the connection after N bytes, answer
503, or advertise a wrong sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class FakeFile:
    data: bytes | Path
    sha256: str | None = None  # what the Hub advertises; computed when None

    @property
    def size(self) -> int:
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)

    def advertised_sha(self) -> str:
        if self.sha256 is None:
            h = hashlib.sha256()
            if isinstance(self.data, Path):
                with self.data.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
            else:
                h.update(self.data)
            self.sha256 = h.hexdigest()
        return self.sha256

    def read(self, start: int, end: int) -> bytes:
        if isinstance(self.data, Path):
            with self.data.open("rb") as fh:
                fh.seek(start)
                return fh.read(end - start)
        return self.data[start:end]


@dataclass
class FakeRepo:
    files: dict[str, FakeFile]
    gated_token: str | None = None  # set: the repo is gated and only this token has access
    commit: str = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Faults:
    cut_after: dict[str, list[int]] = field(default_factory=dict)  # path -> bytes sent before a cut, per GET
    status: dict[str, list[int]] = field(default_factory=dict)  # path -> status answered, per GET
    status_after_cut: dict[str, list[int]] = field(default_factory=dict)  # the same, once the cuts are used up


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.faults = Faults()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def downloads(self, path: str) -> list[dict[str, str]]:
        """Headers of each GET of a file's bytes (to see Range requests)."""
        return [h for m, p, h in self.requests if m == "GET" and p.startswith("/cdn/") and p.endswith("/" + path)]

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- routes ---------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        self.requests.append(("HEAD" if head else "GET", h.path, {k.lower(): v for k, v in h.headers.items()}))
        path = h.path.split("?", 1)[0]
        if m := re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path):
            return self._info(h, m[1])
        if m := re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path):
            return self._resolve(h, m[1], m[3], head)
        if m := re.match(r"^/cdn/([^/]+/[^/]+)/(.+)$", path):
            return self._bytes(h, m[1], m[2], head)
        self._error(h, 404, "EntryNotFound", "not found")

    def _repo(self, h: BaseHTTPRequestHandler, name: str) -> FakeRepo | None:
        repo = self.repos.get(name)
        if repo is None:
            self._error(h, 401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated_token is not None and h.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            self._error(h, 401, "GatedRepo", "Access to model is restricted. You must be authenticated.")
            return None
        return repo

    def _info(self, h: BaseHTTPRequestHandler, name: str) -> None:
        repo = self._repo(h, name)
        if repo is None:
            return
        siblings = [
            {
                "rfilename": p,
                "size": f.size,
                "blobId": f.advertised_sha()[:40],
                "lfs": {"size": f.size, "sha256": f.advertised_sha(), "pointerSize": 134},
            }
            for p, f in sorted(repo.files.items())
        ]
        body = json.dumps(
            {
                "id": name,
                "modelId": name,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated_token else False,
                "siblings": siblings,
            }
        ).encode()
        self._send(h, 200, body, {"Content-Type": "application/json"})

    def _resolve(self, h: BaseHTTPRequestHandler, name: str, path: str, head: bool) -> None:
        repo = self._repo(h, name)
        if repo is None:
            return
        f = repo.files.get(path)
        if f is None:
            return self._error(h, 404, "EntryNotFound", f"{path} does not exist")
        headers = {
            "Location": f"http://localhost:{self.port}/cdn/{name}/{path}",
            "X-Repo-Commit": repo.commit,
            "X-Linked-Etag": f'"{f.advertised_sha()}"',
            "X-Linked-Size": str(f.size),
            "ETag": f'"{f.advertised_sha()[:40]}"',
        }
        self._send(h, 302, b"", headers)

    def _bytes(self, h: BaseHTTPRequestHandler, name: str, path: str, head: bool) -> None:
        repo = self.repos.get(name)
        f = repo.files.get(path) if repo else None
        if f is None:
            return self._error(h, 404, "EntryNotFound", "no such object")
        statuses = self.faults.status.get(path)
        if not statuses and not self.faults.cut_after.get(path):
            statuses = self.faults.status_after_cut.get(path)
        if not head and statuses:
            return self._error(h, statuses.pop(0), "", "Service Unavailable")
        start, end = 0, f.size
        rng = h.headers.get("Range")
        status = 200
        if rng and (m := re.match(r"bytes=(\d+)-(\d*)$", rng)):
            start = int(m[1])
            end = int(m[2]) + 1 if m[2] else f.size
            status = 206
        headers = {
            "Content-Length": str(end - start),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if head:
            return
        cuts = self.faults.cut_after.get(path)
        limit = cuts.pop(0) if cuts else None
        pos = start
        while pos < end:
            chunk_end = min(end, pos + (1 << 20))
            if limit is not None and pos - start + (chunk_end - pos) > limit:
                chunk_end = pos + max(0, limit - (pos - start))
                h.wfile.write(f.read(pos, chunk_end))
                h.wfile.flush()
                h.close_connection = True
                import socket

                h.connection.shutdown(socket.SHUT_RDWR)  # the cut: the client sees a short body
                return
            h.wfile.write(f.read(pos, chunk_end))
            pos = chunk_end

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(h, status, json.dumps({"error": message}).encode(), headers)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
