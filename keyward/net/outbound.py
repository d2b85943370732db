"""The one way keyward makes HTTP requests to user-configured URLs: an SSRF-guarded requests session.

Every connection resolves its host once, checks every resolved address with the SSRF guard and
connects only to those checked addresses, so DNS rebinding between save and connect gains nothing.
The session ignores proxy environment variables, never follows redirects, always has connect and
read timeouts, and caps the size of every answer.

Every request also has a total time budget, which no server can stretch: each connection attempt
and each socket read (status line and headers included) may wait only for the time the budget has
left, so a server dripping one byte at a time is cut off when the budget is spent. Callers on a
request path (OIDC discovery while an admin saves a connector, JWKS fetches while the broker
verifies a token) pass the short REQUEST_PATH_* budget; background work (webhooks) keeps the long one.
"""

import contextlib
import http.client
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util import connection as urllib3_connection

from keyward.net.errors import OutboundBlocked, OutboundError, ResponseTooLarge
from keyward.net.ssrf import allowed_addresses, check_outbound_url

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# The whole request (connect, headers, body), so a server dripping one byte per read timeout cannot
# hold a worker. Background callers (webhooks, deliveries) use this one.
TOTAL_TIMEOUT = 30.0
# Callers that hold a web request open (discovery on POST /v1/idps, JWKS on the broker's hot path).
REQUEST_PATH_TOTAL_TIMEOUT = 5.0
REQUEST_PATH_MAX_ADDRESSES = 2
MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
USER_AGENT = "keyward"


@dataclass(frozen=True)
class _Budget:
    deadline: float
    max_addresses: int | None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_current = threading.local()


@contextlib.contextmanager
def _budget(budget: _Budget) -> Iterator[None]:
    """Make `budget` the one the connections of this thread's current request work within."""
    previous = getattr(_current, "budget", None)
    _current.budget = budget
    try:
        yield
    finally:
        _current.budget = previous


def _current_budget() -> _Budget | None:
    return getattr(_current, "budget", None)


class _DeadlineReader(io.RawIOBase):
    """A socket reader whose every read waits at most for what is left of the request's budget.

    The socket timeout alone bounds each read, and a server sending one byte just inside it keeps
    every read alive; shrinking the timeout to the time left before each read bounds them all.
    """

    def __init__(self, sock: socket.socket):
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        budget = _current_budget()
        if budget is not None:
            remaining = budget.remaining()
            if remaining <= 0:
                raise TimeoutError("The request's total time budget is spent.")
            timeout = self._sock.gettimeout()
            self._sock.settimeout(remaining if timeout is None else min(timeout, remaining))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocketView:
    """What http.client's response sees of the socket: only `makefile`, answered by a _DeadlineReader."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock))


class _DeadlineHTTPResponse(http.client.HTTPResponse):
    """http.client's response, reading status line, headers and body through a _DeadlineReader."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any):
        super().__init__(_DeadlineSocketView(sock), *args, **kwargs)


class _GuardedConnectionMixin:
    """Replaces urllib3's connect step: resolve, check every address, connect only to a checked one.

    Within a request budget, at most `max_addresses` of them are tried, each for at most the time left.
    """

    response_class = _DeadlineHTTPResponse

    def _new_conn(self) -> socket.socket:
        allow_private = settings.KEYWARD_ALLOW_PRIVATE_URLS
        try:
            addresses = allowed_addresses(self._dns_host, self.port, allow_private=allow_private)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        budget = _current_budget()
        if budget is not None and budget.max_addresses is not None:
            addresses = addresses[: budget.max_addresses]
        last_error: OSError | None = None
        for address in addresses:
            timeout = self.timeout
            if budget is not None:
                remaining = budget.remaining()
                if remaining <= 0:
                    raise ConnectTimeoutError(self, f"Connection to {self.host} timed out (total budget spent).")
                timeout = min(timeout, remaining) if isinstance(timeout, int | float) else remaining
            try:
                sock = urllib3_connection.create_connection(
                    (str(address), self.port),
                    timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
            except OSError as exc:
                last_error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}")


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> NoReturn:
        raise OutboundBlocked("Outbound requests never go through a proxy.", code="proxy_not_allowed")


class OutboundSession(requests.Session):
    """A requests session for user-configured URLs. Responses arrive fully read (up to the cap) and closed."""

    def __init__(
        self,
        *,
        timeout: tuple[float, float] | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        total_timeout: float | None = None,
        max_addresses: int | None = None,
    ):
        super().__init__()
        self.trust_env = False
        self.proxies = {}
        self.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT) if timeout is None else timeout
        self.max_response_bytes = max_response_bytes
        self.total_timeout = total_timeout
        self.max_addresses = max_addresses
        self.headers["User-Agent"] = USER_AGENT
        adapter = _GuardedAdapter(max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def get_redirect_target(self, resp: requests.Response) -> None:
        """No redirect is ever followed, nor its body read past the cap (requests would read it whole)."""
        return None

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:
        """Send one request. Raises OutboundBlocked, ResponseTooLarge, or a requests exception.

        Running out of the total budget, anywhere from connect to the last byte, is a requests.Timeout.
        """
        if kwargs.get("proxies"):
            raise OutboundBlocked("Outbound requests never go through a proxy.", code="proxy_not_allowed")
        url = url.decode() if isinstance(url, bytes) else url
        check_outbound_url(url, resolve=False)
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        total = TOTAL_TIMEOUT if self.total_timeout is None else self.total_timeout
        budget = _Budget(deadline=time.monotonic() + total, max_addresses=self.max_addresses)
        with _budget(budget):
            response = super().request(method, url, **kwargs)
            try:
                _read_capped(response, limit=self.max_response_bytes, deadline=budget.deadline)
            finally:
                response.close()
        return response


def _read_capped(response: requests.Response, *, limit: int, deadline: float) -> None:
    """Read the body whole, up to `limit` bytes and until `deadline`.

    `read1` returns whatever has arrived (iter_content would wait for a full chunk), so the
    deadline is checked before every socket read.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() >= deadline:
            raise requests.exceptions.ReadTimeout("The request's total time budget is spent.", response=response)
        chunk = _read_some(response)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(limit)
        chunks.append(chunk)
    response._content = b"".join(chunks)
    response._content_consumed = True


def _read_some(response: requests.Response) -> bytes:
    """One read of the decoded body; urllib3's errors become the requests exceptions callers expect."""
    try:
        return response.raw.read1(_CHUNK_BYTES, decode_content=True)
    except ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc, response=response) from None
    except Urllib3SSLError as exc:
        raise requests.exceptions.SSLError(exc, response=response) from None
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc, response=response) from None
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc, response=response) from None


def outbound_session(
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    total_timeout: float | None = None,
    max_addresses: int | None = None,
) -> OutboundSession:
    """A fresh guarded session; use it as a context manager so its connections are closed.

    `total_timeout` (default TOTAL_TIMEOUT) bounds each request from connect to last byte;
    `max_addresses` caps how many of a host's addresses are tried (default: all).
    """
    return OutboundSession(
        max_response_bytes=max_response_bytes, total_timeout=total_timeout, max_addresses=max_addresses
    )


def fetch_json(
    url: str,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    total_timeout: float | None = None,
    max_addresses: int | None = None,
) -> Any:
    """GET a JSON document through the guard. Every failure is an OutboundError with a stable code.

    Codes: the guard's (`invalid_url`, `url_scheme_not_allowed`, `url_destination_not_allowed`,
    `proxy_not_allowed`), `response_too_large`, `timeout`, `unreachable`, `redirect_not_followed`,
    `http_status`, `invalid_json`. Callers on a request path pass REQUEST_PATH_TOTAL_TIMEOUT and
    REQUEST_PATH_MAX_ADDRESSES.
    """
    with outbound_session(
        max_response_bytes=max_response_bytes, total_timeout=total_timeout, max_addresses=max_addresses
    ) as session:
        try:
            response = session.get(url, headers={"Accept": "application/json"})
        except requests.Timeout:
            raise OutboundError("The server took too long to answer.", code="timeout") from None
        except requests.RequestException:
            raise OutboundError("The server could not be reached.", code="unreachable") from None
    if response.is_redirect or 300 <= response.status_code < 400:
        raise OutboundError(
            "The server answered with a redirect, which keyward does not follow.", code="redirect_not_followed"
        )
    if not 200 <= response.status_code < 300:
        raise OutboundError(f"The server answered HTTP {response.status_code}.", code="http_status")
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        raise OutboundError("The server's answer is not valid JSON.", code="invalid_json") from None
