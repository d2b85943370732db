"""A server on 127.0.0.1 that drips its answer one byte at a time: the slow-read attack on outbound requests.

It records whether it managed to send the whole answer, so a test can prove the client hung up
first without measuring time.
"""

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

ACCEPT_LIMIT_SECONDS = 10


class DripServer:
    """Answers one request with a JSON string body of `body_bytes` bytes, one byte every `interval` seconds.

    With `drip_headers` the status line and headers drip too; otherwise they arrive at once.
    """

    def __init__(self, *, body_bytes: int, interval: float, drip_headers: bool = False):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_LIMIT_SECONDS)
        self.port = self._listener.getsockname()[1]
        self._body = b'"' + b"a" * (body_bytes - 2) + b'"'
        self._head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(self._body)}\r\n\r\n".encode()
        )
        self._interval = interval
        self._drip_headers = drip_headers
        self._stop = threading.Event()
        self.sent_everything = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            if not self._drip_headers:
                conn.sendall(self._head)
            dripped = self._body if not self._drip_headers else self._head + self._body
            for byte in dripped:  # bounded: one pass over a fixed answer
                if self._stop.wait(self._interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client hung up
                    return
            self.sent_everything = True

    def wait_until_done(self) -> bool:
        """Wait for the server to stop sending (whole answer, or the client hung up); True once it has."""
        self._thread.join(ACCEPT_LIMIT_SECONDS)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(ACCEPT_LIMIT_SECONDS)


@pytest.fixture
def drip_server() -> Iterator[Callable[..., DripServer]]:
    """A factory of DripServers; every server it made is stopped after the test."""
    servers: list[DripServer] = []

    def make(**kwargs) -> DripServer:
        server = DripServer(**kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
