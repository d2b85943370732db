"""Fixtures for the native-minter tests: fresh breakers, no backoff waits, and real local servers."""

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from broker.minters import resilience
from tests.broker.minters.stubs import App, StubServer


@pytest.fixture(autouse=True)
def _fresh_breakers(monkeypatch):
    """Breakers are per process: forget them between tests. Backoff pauses are skipped, attempts still counted."""
    resilience.reset()
    monkeypatch.setattr(resilience, "BACKOFF_SECONDS", 0.0)
    yield
    resilience.reset()


class Stubs:
    """Starts stub servers for one test; holds are released and servers stopped at teardown."""

    def __init__(self) -> None:
        self._servers: list[StubServer] = []
        self._holds: list[threading.Event] = []

    def start(self, app: App) -> StubServer:
        server = StubServer(app)
        self._servers.append(server)
        return server

    def hold(self) -> threading.Event:
        event = threading.Event()
        self._holds.append(event)
        return event

    def close(self) -> None:
        for event in self._holds:
            event.set()
        for server in self._servers:
            server.stop()


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    started = Stubs()
    yield started
    started.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def connection_attempts(monkeypatch) -> list[tuple[str, int]]:
    """Every outbound connection attempt (address, port), so a test can count retries to a closed port."""
    from keyward.net import outbound

    attempts: list[tuple[str, int]] = []
    real: Callable = outbound.urllib3_connection.create_connection

    def create_connection(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"test tried to connect to {address[0]}"
        attempts.append((address[0], address[1]))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(outbound.urllib3_connection, "create_connection", create_connection)
    return attempts
