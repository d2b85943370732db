"""A SIEM on 127.0.0.1 for tests: it checks every request's signature, answers as the test says,
and keeps the events it accepted, dropping repeats by their `id` as a real receiver would."""

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from keyward.outbox.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER
from tests.local_http import QuietHTTPServer

REPLAY_WINDOW_SECONDS = 300
HOLD_LIMIT_SECONDS = 20  # a held answer is released by the test long before this


def signature_is_valid(headers: dict[str, str], body: bytes, secret: bytes, now: float | None = None) -> bool:
    """What a SIEM does: recompute HMAC-SHA256 over "<t>.<raw body>", compare in constant time,
    and refuse a timestamp outside the replay window."""
    try:
        parts = dict(item.split("=", 1) for item in headers[SIGNATURE_HEADER].split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > REPLAY_WINDOW_SECONDS:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class Received:
    """One POST as it arrived, and what the receiver answered."""

    event_id: str
    ids: list[str]
    events: list[dict[str, Any]]
    status: int
    signature_ok: bool
    body: bytes


class SiemReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.received: list[Received] = []
        self.accepted_ids: list[str] = []  # de-duplicated, in first-arrival order
        self.duplicates = 0
        self._seen: set[str] = set()
        self._answers: deque[int] = deque()
        self._hold: threading.Event | None = None
        self._lock = threading.Lock()
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str = "/siem") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer_next(self, *statuses: int) -> None:
        """Answer the next requests with these statuses (not accepting their events), then 200 again."""
        with self._lock:
            self._answers.extend(statuses)

    def hold_next(self) -> threading.Event:
        """Accept the next request's events, then hold the answer until the returned event is set."""
        release = threading.Event()
        with self._lock:
            self._hold = release
        return release

    def statuses(self) -> list[int]:
        with self._lock:
            return [item.status for item in self.received]

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        """Poll until `predicate()` holds (bounded), else fail naming what was awaited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; received {self.summary()}")

    def summary(self) -> str:
        return ", ".join(f"{item.event_id}→{item.status}" for item in self.received) or "nothing"

    def stop(self) -> None:
        with self._lock:
            if self._hold is not None:
                self._hold.set()
        self._server.shutdown()
        self._server.server_close()

    def _take(self, headers: dict[str, str], body: bytes) -> tuple[int, threading.Event | None]:
        signature_ok = signature_is_valid(headers, body, self.secret)
        events = json.loads(body).get("events", []) if signature_ok else []
        ids = [event["id"] for event in events]
        with self._lock:
            status = self._answers.popleft() if self._answers else 200
            if not signature_ok:
                status = 401
            hold, self._hold = self._hold, None
            if status == 200:
                for event_id in ids:
                    if event_id in self._seen:
                        self.duplicates += 1
                    else:
                        self._seen.add(event_id)
                        self.accepted_ids.append(event_id)
            self.received.append(Received(headers.get(EVENT_ID_HEADER, ""), ids, events, status, signature_ok, body))
        return status, hold

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, hold = receiver._take(dict(self.headers), body)
                if hold is not None:
                    hold.wait(HOLD_LIMIT_SECONDS)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (a killed worker): it never learns the answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
