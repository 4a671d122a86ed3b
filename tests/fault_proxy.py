"""A loopback HTTP proxy in front of a real FHIR server, with faults a test switches on.

Every request is forwarded to the server unless a fault armed for it says otherwise, and every one
is recorded (``Exchange``), so a test can count what a client sent, retried and resent. Each answer
carries ``Connection: close``: the client opens a connection per request, and a proxy that stops
listening is really unreachable.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests

# Headers that belong to one connection, or that the proxy sets itself.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
)


@dataclass
class Exchange:
    """One request the proxy received, and what became of it."""

    method: str
    path: str
    bundle: str | None  # the type of a POSTed Bundle
    reads: list[str]  # request URLs of its GET entries
    writes: list[str]  # request URLs of its PUT entries
    started: float  # time.monotonic() when it arrived
    fault: str | None = None  # the name of the fault applied
    forwarded: bool = False  # the server received it
    status: int | None = None  # the status the client was sent (None: no answer)


@dataclass
class Fault:
    """What to do to the requests ``when`` selects, ``times`` times (the first ones met)."""

    name: str  # refuse | reset | status | slow | stall | break-entries | fail-entries
    when: Callable[[Exchange], bool]
    times: int = 1
    # status: the statuses sent, one per request in turn; fail-entries: that of the failed entries
    status: tuple[int, ...] = (503,)
    headers: dict[str, str] = field(default_factory=dict)  # status: headers sent with it
    seconds: float = 0.0  # refuse: how long to stay down; slow: the delay of the answer
    entries: int = 1  # break-entries, fail-entries: how many PUT entries
    used: int = 0  # how many requests it was applied to


def nth_write(n: int) -> Callable[[Exchange], bool]:
    """The n-th Bundle of PUTs the client sent, and each time it sent the same one again."""
    seen: list[list[str]] = []

    def select(exchange: Exchange) -> bool:
        if exchange.writes and exchange.writes not in seen:
            seen.append(exchange.writes)
        return len(seen) >= n and exchange.writes == seen[n - 1]

    return select


class FaultProxy:
    """A threaded HTTP proxy on a free loopback port, forwarding to ``upstream`` (a FHIR base URL);
    ``base_url`` is the same base behind the proxy."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.faults: list[Fault] = []
        self.stalled = threading.Event()  # a stall fault holds a request
        self.up = threading.Event()  # listening (cleared while a refuse fault lasts)
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = self._listen(0)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}{urlsplit(self.upstream).path}"

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.up.wait(timeout=30)
        self._server.shutdown()
        self._server.server_close()

    def arm(self, name: str, when: Callable[[Exchange], bool], **options: Any) -> Fault:
        """Apply a fault to the next requests that ``when`` selects."""
        fault = Fault(name, when, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """No more faults, and a fresh record of exchanges."""
        with self._lock:
            self.faults.clear()
            self.exchanges.clear()

    def applied(self, name: str) -> list[Exchange]:
        """The exchanges a fault of this name was applied to."""
        return [e for e in self.exchanges if e.fault == name]

    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        server.daemon_threads = True  # a stalled request never holds up the test's exit
        server.block_on_close = False
        server.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}).start()
        self.up.set()
        return server

    def _take(self, exchange: Exchange) -> Fault | None:
        with self._lock:
            self.exchanges.append(exchange)
            for fault in self.faults:
                if fault.times > 0 and fault.when(exchange):
                    fault.times -= 1
                    fault.used += 1
                    exchange.fault = fault.name
                    return fault
        return None

    # -- one request ------------------------------------------------------------------------

    def handle(self, handler: _Handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        document = json.loads(body) if body else None
        entries = (
            document.get("entry", [])
            if isinstance(document, dict) and document.get("resourceType") == "Bundle"
            else []
        )
        exchange = Exchange(
            handler.command,
            handler.path,
            document.get("type") if entries else None,
            [e["request"]["url"] for e in entries if e["request"]["method"] == "GET"],
            [e["request"]["url"] for e in entries if e["request"]["method"] == "PUT"],
            time.monotonic(),
        )
        fault = self._take(exchange)
        name = fault.name if fault else None
        if fault and name == "refuse":
            self._go_down(fault.seconds)
            _abort(handler)
            return
        if fault and name == "status":
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient", "diagnostics": "injected"}],
            }
            status = fault.status[(fault.used - 1) % len(fault.status)]
            self._answer(handler, exchange, status, fault.headers, json.dumps(outcome).encode())
            return
        if fault and name == "break-entries":
            # An id that differs from the one in the request URL: the server refuses the entry.
            for entry in [e for e in entries if e["request"]["method"] == "PUT"][: fault.entries]:
                entry["resource"]["id"] = "not-" + entry["resource"]["id"]
            body = json.dumps(document).encode()
        status, headers, answer = self._forward(handler, body)
        exchange.forwarded = True
        if fault and name == "fail-entries":
            answer = _fail_entries(answer, fault.entries, fault.status[0])
        if fault and name == "slow":
            time.sleep(fault.seconds)
        if fault and name == "stall":
            self.stalled.set()
            self._release.wait()
            _abort(handler)
            return
        if fault and name == "reset":
            head = answer[: len(answer) // 2]
            self._answer(handler, exchange, status, headers, answer, send=head)
            _abort(handler)
            return
        self._answer(handler, exchange, status, headers, answer)

    def _forward(self, handler: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"
        path = handler.path.removeprefix(urlsplit(self.upstream).path)
        response = requests.request(
            handler.command, self.upstream + path, data=body or None, headers=headers, timeout=120
        )
        kept = {
            k: self._ours(v) for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP
        }
        return response.status_code, kept, self._ours(response.content)

    def _ours(self, value: Any) -> Any:
        """Text or bytes with the server's base URL turned to the proxy's."""
        if isinstance(value, bytes):
            return value.replace(self.upstream.encode(), self.base_url.encode())
        return value.replace(self.upstream, self.base_url)

    def _answer(
        self,
        handler: _Handler,
        exchange: Exchange,
        status: int,
        headers: dict[str, str],
        body: bytes,
        send: bytes | None = None,
    ) -> None:
        exchange.status = status
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body if send is None else send)
        except OSError:
            exchange.status = None  # the client had gone (it timed out)

    def _go_down(self, seconds: float) -> None:
        """Stop listening now (connections are refused), and listen again after ``seconds``."""
        self.up.clear()
        self._server.shutdown()
        self._server.server_close()

        def back() -> None:
            time.sleep(seconds)
            self._server = self._listen(self.port)

        threading.Thread(target=back).start()


def _fail_entries(answer: bytes, count: int, status: int) -> bytes:
    """A batch-response whose first ``count`` entries say ``status`` (the server did store them)."""
    reply = json.loads(answer)
    for entry in reply.get("entry", [])[:count]:
        entry.pop("resource", None)
        entry["response"] = {"status": f"{status} Injected"}
    return json.dumps(reply).encode()


def _abort(handler: _Handler) -> None:
    """Close the client's connection with a reset, whatever was sent on it."""
    handler.close_connection = True
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.proxy.handle(self)  # type: ignore[attr-defined]

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # the test's output stays clean
        pass
