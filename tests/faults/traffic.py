"""Concurrent HTTP clients for the fault tests: a bounded mix of requests against a real server,
every answer recorded, so a test can say exactly what each client saw before, during and after."""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import requests

from tests.processes import wait_until

REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Answer:
    kind: str  # which request of the mix, e.g. "issue"
    status: int  # 0: no HTTP answer at all (reset, timeout), as bad as a 500
    error: str = ""  # the error code of a non-2xx answer
    credential_id: str = ""
    retry_after: str | None = None


Call = Callable[[requests.Session], requests.Response]


def answer_of(kind: str, response: requests.Response) -> Answer:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return Answer(
        kind=kind,
        status=response.status_code,
        error=str(body.get("error", "")) if response.status_code >= 400 else "",
        credential_id=str(body.get("credential_id", "")),
        retry_after=response.headers.get("Retry-After"),
    )


class Traffic:
    """`threads` clients, each cycling through `calls` (kind → request) until stopped or `cap` requests."""

    def __init__(self, calls: dict[str, Call], *, threads: int = 6, cap: int = 400) -> None:
        self._calls = list(calls.items())
        self._cap = cap
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(threads)]

    def start(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def mark(self) -> int:
        """A position in the answers: `answers(since=mark)` are those that arrived after it."""
        with self._lock:
            return len(self._answers)

    def answers(self, since: int = 0) -> list[Answer]:
        with self._lock:
            return list(self._answers[since:])

    def count(self, since: int = 0, **match: object) -> int:
        return sum(all(getattr(a, k) == v for k, v in match.items()) for a in self.answers(since))

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        wait_until(lambda: predicate() or not self.running, timeout, what)
        assert predicate(), f"the clients stopped (cap reached) before {what}"

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
        assert not self.running, "a client thread did not finish"
        return self.answers()

    def _client(self, number: int) -> None:
        with requests.Session() as session:
            for turn in range(self._cap):
                if self._stop.is_set():
                    return
                kind, call = self._calls[(number + turn) % len(self._calls)]
                try:
                    answer = answer_of(kind, call(session))
                except requests.RequestException as exc:
                    answer = Answer(kind=kind, status=0, error=type(exc).__name__)
                with self._lock:
                    self._answers.append(answer)
