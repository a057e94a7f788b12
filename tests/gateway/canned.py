"""A canned loopback HTTP server for gateway tests: each path answers with a function of the request
body (a whole answer, or a stream written chunk by chunk), and every request is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# status, content type, body (or chunks, streamed), and optionally more headers
Reply = tuple[int, str, bytes | Iterable[bytes]] | tuple[int, str, bytes | Iterable[bytes], dict[str, str]]

__all__ = ["Canned", "Reply", "json_reply", "sse", "sse_reply"]


def json_reply(obj: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(obj).encode()


def sse(*objs: Any, done: bool = True) -> list[bytes]:
    """SSE ``data:`` frames of ``objs`` (strings go as they are), then ``[DONE]``."""
    frames = [f"data: {o if isinstance(o, str) else json.dumps(o)}\n\n".encode() for o in objs]
    return frames + ([b"data: [DONE]\n\n"] if done else [])


def sse_reply(frames: list[bytes]) -> Reply:
    return 200, "text/event-stream", frames


class Canned:
    """``Canned({"/v1/chat/completions": lambda body: json_reply({...})})``; ``.url`` is its root."""

    def __init__(self, routes: dict[str, Callable[[dict[str, Any]], Reply]], *, chunk_delay: float = 0.0) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # path, headers, body
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, raw: bytes) -> None:
                path = self.path.split("?")[0]
                canned.requests.append((path, dict(self.headers.items()), raw))
                route = canned.routes.get(path)
                reply: Reply = (404, "application/json", b'{"error": {"message": "no such route"}}')
                if route is not None:
                    reply = route(json.loads(raw) if raw.strip() else {})
                status, kind, body = reply[0], reply[1], reply[2]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                for name, value in (reply[3] if len(reply) > 3 else {}).items():  # type: ignore[misc]
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        if chunk_delay:
                            time.sleep(chunk_delay)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def do_GET(self) -> None:
                self._answer(b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for p, _, raw in self.requests if p == path and raw.strip()]

    def last(self, path: str) -> dict[str, Any]:
        return self.bodies(path)[-1]

    def last_raw(self, path: str) -> bytes:
        return next(raw for p, _, raw in reversed(self.requests) if p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
