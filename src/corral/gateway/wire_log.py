"""Two ASGI middlewares every request passes: a request id, and (opt-in) a log of the wire.

``x-request-id``: every answer carries one, the client's own if it sent a plain one (letters, digits,
``._-``, at most 64), else a new ``req_…``; the request's log line names it, so a user can find a
failed call in the log from the header.

The wire log (``[gateway] wire_log = true`` or ``corral serve --wire-log``): each request's method,
path, headers and body, and the answer's status, headers and body (streams chunk by chunk), logged on
the ``corral.wire`` logger at INFO, so a client can be debugged without a proxy. Keys are masked:
``authorization``/``x-api-key``/``cookie`` headers, every configured secret, anything shaped like a
key; each body is cut at ``WIRE_LOG_BYTES``. Off by default: it writes whole conversations to the log.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID", "RequestId", "WireLog"]

REQUEST_ID = "corral.request_id"  # the scope key handlers read the id from
WIRE_LOG_BYTES = 65536
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_SECRET_HEADERS = frozenset({b"authorization", b"x-api-key", b"cookie", b"set-cookie", b"proxy-authorization"})

wire = logging.getLogger("corral.wire")


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = given if given is not None and _CLIENT_ID.fullmatch(given) else b"req_" + uuid.uuid4().hex[:20].encode()
        scope[REQUEST_ID] = rid.decode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _shown(data: bytes, redact: Callable[[str], str], limit: int = WIRE_LOG_BYTES) -> str:
    from .wire_errors import mask_key_shapes

    text = data[:limit].decode("utf-8", "replace")
    more = f" … ({len(data) - limit} more bytes)" if len(data) > limit else ""
    return mask_key_shapes(redact(text)) + more


def _headers(raw: list[tuple[bytes, bytes]]) -> str:
    return ", ".join(
        f"{k.decode('latin-1')}: {'***' if k.lower() in _SECRET_HEADERS else v.decode('latin-1')}" for k, v in raw
    )


class WireLog:
    def __init__(self, app: ASGIApp, redact: Callable[[str], str]) -> None:
        self.app = app
        self.redact = redact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not wire.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        rid = scope.get(REQUEST_ID, "-")
        body: list[bytes] = []
        logged = [False]

        def log_request() -> None:
            if not logged[0]:
                logged[0] = True
                query = scope.get("query_string") or b""
                target = scope.get("path", "") + ("?" + query.decode("latin-1") if query else "")
                shown = target.encode("unicode_escape").decode("ascii")  # no CR/LF into the log
                head, sent = _headers(scope["headers"]), _shown(b"".join(body), self.redact)
                wire.info("%s > %s %s [%s] %s", rid, scope.get("method"), shown, head, sent)

        async def logged_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    log_request()
            return message

        async def logged_send(message: Message) -> None:
            log_request()
            if message["type"] == "http.response.start":
                wire.info("%s < %s [%s]", rid, message["status"], _headers(list(message.get("headers", ()))))
            elif message["type"] == "http.response.body" and message.get("body"):
                wire.info("%s < %s", rid, _shown(message["body"], self.redact))
            await send(message)

        await self.app(scope, logged_receive, logged_send)
