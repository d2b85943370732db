"""The one way keyward makes HTTP requests to user-configured URLs: an SSRF-guarded requests session.

Every connection resolves its host once, checks every resolved address with the SSRF guard and
connects only to those checked addresses, so DNS rebinding between save and connect gains nothing.
The session ignores proxy environment variables, never follows redirects, always has connect and
read timeouts, and caps the size of every answer.
"""

import json
import socket
import sys
import time
from typing import Any, NoReturn

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from keyward.net.errors import OutboundBlocked, OutboundError, ResponseTooLarge
from keyward.net.ssrf import allowed_addresses, check_outbound_url

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# Bounds the whole body download too, so a server dripping one byte per read timeout cannot hold a worker.
TOTAL_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
USER_AGENT = "keyward"


class _GuardedConnectionMixin:
    """Replaces urllib3's connect step: resolve, check every address, connect only to a checked one."""

    def _new_conn(self) -> socket.socket:
        allow_private = settings.KEYWARD_ALLOW_PRIVATE_URLS
        try:
            addresses = allowed_addresses(self._dns_host, self.port, allow_private=allow_private)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        last_error: OSError | None = None
        for address in addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (str(address), self.port),
                    self.timeout,
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
    ):
        super().__init__()
        self.trust_env = False
        self.proxies = {}
        self.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT) if timeout is None else timeout
        self.max_response_bytes = max_response_bytes
        self.headers["User-Agent"] = USER_AGENT
        adapter = _GuardedAdapter(max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def get_redirect_target(self, resp: requests.Response) -> None:
        """No redirect is ever followed, nor its body read past the cap (requests would read it whole)."""
        return None

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:
        """Send one request. Raises OutboundBlocked, ResponseTooLarge, or a requests exception."""
        if kwargs.get("proxies"):
            raise OutboundBlocked("Outbound requests never go through a proxy.", code="proxy_not_allowed")
        url = url.decode() if isinstance(url, bytes) else url
        check_outbound_url(url, resolve=False)
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        started = time.monotonic()
        response = super().request(method, url, **kwargs)
        try:
            _read_capped(response, limit=self.max_response_bytes, deadline=started + TOTAL_TIMEOUT)
        finally:
            response.close()
        return response


def _read_capped(response: requests.Response, *, limit: int, deadline: float) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(limit)
        if time.monotonic() > deadline:
            raise OutboundError("The server took too long to answer.", code="timeout")
        chunks.append(chunk)
    response._content = b"".join(chunks)
    response._content_consumed = True


def outbound_session(*, max_response_bytes: int = MAX_RESPONSE_BYTES) -> OutboundSession:
    """A fresh guarded session; use it as a context manager so its connections are closed."""
    return OutboundSession(max_response_bytes=max_response_bytes)


def fetch_json(url: str, *, max_response_bytes: int = MAX_RESPONSE_BYTES) -> Any:
    """GET a JSON document through the guard. Every failure is an OutboundError with a stable code.

    Codes: the guard's (`invalid_url`, `url_scheme_not_allowed`, `url_destination_not_allowed`,
    `proxy_not_allowed`), `response_too_large`, `timeout`, `unreachable`, `redirect_not_followed`,
    `http_status`, `invalid_json`.
    """
    with outbound_session(max_response_bytes=max_response_bytes) as session:
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
