"""A stand-in for llama-server, for fault injection: takes llama-server's argv, serves /health and
/v1/chat/completions, and misbehaves on request.

    python fake_llama_server.py --mode MODE -m x.gguf --host 127.0.0.1 --port N [other flags ignored]

MODE: ok | slow (503 "loading" for --delay s first) | hang (never healthy) | die (exits at once) |
crash (exits in the middle of answering a chat request).

--gen-tokens N (default 0: one JSON answer, at once) makes it generate: N tokens, --gen-delay s apart,
streamed as OpenAI chunks ending with finish_reason and [DONE] when the request asks for a stream,
else one JSON answer after the same time (the reliability battery's swap storm uses this). --gen-slots K
lets K requests generate at once and queues the others, like llama-server's -np (default: no limit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "model": "fake",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fake answer"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False)  # llama-server's own flags (--slots…) pass by
    p.add_argument("--mode", default="ok")
    p.add_argument("--delay", type=float, default=2.0)
    p.add_argument("--crash-once", default=None, help="crash only if this marker file does not exist yet")
    p.add_argument("-m", "--model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--gen-tokens", type=int, default=0)
    p.add_argument("--gen-delay", type=float, default=0.0)
    p.add_argument("--gen-slots", type=int, default=0)
    args, _ = p.parse_known_args()
    if args.mode == "die":
        print("fake: refusing to start", file=sys.stderr)
        sys.exit(3)
    key = os.environ.get("LLAMA_ARG_API_KEY", "")
    slots = threading.BoundedSemaphore(args.gen_slots) if args.gen_slots > 0 else None
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                loading = args.mode == "hang" or (args.mode == "slow" and time.monotonic() - started < args.delay)
                if loading:
                    self._json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
                else:
                    self._json(200, {"status": "ok"})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def _generate(self, stream: bool) -> None:
            if not stream:
                time.sleep(args.gen_tokens * args.gen_delay)
                self._json(200, ANSWER)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()

            def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
                data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
                return f"data: {json.dumps(data)}\n\n".encode()

            try:
                self.wfile.write(chunk({"role": "assistant", "content": ""}))
                for n in range(args.gen_tokens):
                    time.sleep(args.gen_delay)
                    self.wfile.write(chunk({"content": f" t{n}"}))
                    self.wfile.flush()
                self.wfile.write(chunk({}, "stop") + b"data: [DONE]\n\n")
            except OSError:
                pass  # the client went away: the generation stops, as llama-server's does
            self.close_connection = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._json(401, {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})
                return
            crash = args.mode == "crash"
            if args.crash_once:
                crash = not os.path.exists(args.crash_once)
                if crash:
                    open(args.crash_once, "w").close()
            if crash:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"choices": [')
                self.wfile.flush()
                os._exit(9)
            if args.gen_tokens:
                try:
                    stream = json.loads(raw).get("stream") is True
                except (ValueError, AttributeError):
                    stream = False
                if slots is None:
                    self._generate(stream)
                    return
                with slots:
                    self._generate(stream)
                return
            self._json(200, ANSWER)

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
