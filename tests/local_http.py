"""Real HTTP servers on 127.0.0.1 that stand in for identity providers, webhooks and attackers in tests.

Each server counts the requests it receives, so a test can prove that something was never fetched.
"""

import ipaddress
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from keyward.net import outbound

HOLD_LIMIT_SECONDS = 10  # a held response is released by the test's teardown long before this


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (a timeout test, a killed worker) is expected, not an error."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True
    hold: threading.Event | None = None


class LocalServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []  # request bodies, in the order of `requests`
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._stopped = False

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def respond(
        self,
        path: str,
        *,
        json_body: Any = None,
        body: bytes = b"",
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_length: bool = True,
        hold: threading.Event | None = None,
    ) -> None:
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        with self._lock:
            self._routes[path] = Route(status, body, headers, content_length, hold)

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for _method, seen, _headers in self.requests if path is None or seen == path)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.requests.append((self.command, path, dict(self.headers)))
                    server.bodies.append(body)
                    route = server._routes.get(path, Route(status=404, body=b"not found"))
                if route.hold is not None:
                    route.hold.wait(HOLD_LIMIT_SECONDS)
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.content_length:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def local_server() -> Iterator[Callable[[], LocalServer]]:
    """A factory of local servers; every server it made is stopped after the test."""
    servers: list[LocalServer] = []

    def start() -> LocalServer:
        server = LocalServer()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def loopback_only(monkeypatch) -> None:
    """Safety net: an outbound connection to anything but loopback fails the test instead of leaving the machine."""
    real_create_connection = outbound.urllib3_connection.create_connection

    def create_connection(address, *args, **kwargs):
        assert ipaddress.ip_address(address[0]).is_loopback, f"test tried to connect to {address[0]}"
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(outbound.urllib3_connection, "create_connection", create_connection)


@pytest.fixture
def fake_dns(monkeypatch) -> dict[str, list[list[str]]]:
    """Answers for host names under `.test`: a list of answers, used in turn (the last one repeats).

    Lets a test make a name resolve to 127.0.0.1, or change its answer between two lookups.
    """
    answers: dict[str, list[list[str]]] = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.rstrip(".").endswith(".test"):
            return real_getaddrinfo(host, port, *args, **kwargs)
        queue = answers.get(name.rstrip("."))
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers
