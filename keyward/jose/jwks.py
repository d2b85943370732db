"""A key source backed by a remote JWKS, fetched through the SSRF guard and cached in process.

Caching rules, each bounding something an attacker or an outage could otherwise push around:
- keys are fresh for JWKS_CACHE_TTL; after that the next lookup refetches;
- an unknown `kid` triggers one refetch, but at most one fetch attempt per source happens every
  JWKS_MIN_REFETCH_INTERVAL, so a flood of random kids cannot hammer the identity provider;
- when fetching fails, the last good keys keep serving for up to JWKS_MAX_STALE past their TTL,
  then lookups fail closed with `jwks_unavailable`.
The constants are read when a source is made; tests pass a clock instead of sleeping.

`fetch_discovery` reads an identity provider's issuer and JWKS URI from its OpenID Connect
discovery document, through the same guard. The document's `issuer` must be the URL it was
discovered from (OpenID Connect Discovery §4.3), so a provider cannot claim to be another issuer,
and every endpoint it names passes the same checks as a typed-in URL.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import josepy

from keyward.core.exceptions import InvalidRequest
from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.keys import MAX_KID_LENGTH, SUPPORTED_ALGORITHMS, rsa_key_size_ok, select_key
from keyward.net import outbound
from keyward.net.errors import OutboundError
from keyward.net.ssrf import validate_outbound_url

logger = logging.getLogger(__name__)

JWKS_CACHE_TTL = 300.0
JWKS_MIN_REFETCH_INTERVAL = 30.0
JWKS_MAX_STALE = 3600.0
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 100
MAX_SHARED_SOURCES = 512
WELL_KNOWN_PATH = "/.well-known/openid-configuration"
_OPTIONAL_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")

_KEY_TYPES = {"RSA", "EC"}


class JwksInvalid(ValueError):
    """A fetched document is not a usable JWKS."""


def _usable_key(entry: Any) -> josepy.JWK | None:
    """The public verification key an entry describes, or None for anything keyward will not use."""
    if not isinstance(entry, dict) or entry.get("kty") not in _KEY_TYPES:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    if "alg" in entry and entry["alg"] not in SUPPORTED_ALGORITHMS:
        return None
    if "d" in entry:  # a JWKS that publishes private keys is broken; trust nothing from that entry
        return None
    try:
        jwk = josepy.JWK.from_json(entry)
    except Exception:  # josepy raises a mix of its own errors, KeyError, TypeError and ValueError
        return None
    if isinstance(jwk, josepy.JWKRSA) and not rsa_key_size_ok(jwk):
        return None
    return jwk


def parse_jwks(document: Any) -> dict[str | None, josepy.JWK]:
    """The usable signing keys of a JWKS document, by kid. Raises JwksInvalid if there are none."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksInvalid("not a JWKS document")
    keys: dict[str | None, josepy.JWK] = {}
    for entry in document["keys"][:MAX_JWKS_KEYS]:
        jwk = _usable_key(entry)
        if jwk is None:
            continue
        kid = entry.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH):
            continue
        keys.setdefault(kid, jwk)
    if not keys:
        raise JwksInvalid("no usable signing keys")
    return keys


def _fetch_on_request_path(url: str) -> Any:
    """Both fetches here hold a web request open (the broker's, an admin's): short budget, few addresses."""
    return outbound.fetch_json(
        url,
        max_response_bytes=MAX_JWKS_BYTES,
        total_timeout=outbound.REQUEST_PATH_TOTAL_TIMEOUT,
        max_addresses=outbound.REQUEST_PATH_MAX_ADDRESSES,
    )


class JwksKeySource:
    """Keys from a JWKS URL. Thread-safe: one fetch at a time, other threads wait for its result."""

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float | None = None,
        min_refetch_interval: float | None = None,
        max_stale: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self._cache_ttl = JWKS_CACHE_TTL if cache_ttl is None else cache_ttl
        self._min_refetch_interval = JWKS_MIN_REFETCH_INTERVAL if min_refetch_interval is None else min_refetch_interval
        self._max_stale = JWKS_MAX_STALE if max_stale is None else max_stale
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: Mapping[str | None, josepy.JWK] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None

    def key_for(self, kid: str | None) -> josepy.JWK | None:
        """The key named `kid`; None if the JWKS has no such key. Raises TokenInvalid(jwks_unavailable)."""
        with self._lock:
            now = self._clock()
            if self._keys is None or now >= self._fetched_at + self._cache_ttl:
                self._fetch(now)
            self._fail_if_unusable(now)
            key = select_key(self._keys, kid)
            if key is None and self._fetch(now):
                key = select_key(self._keys, kid)
            return key

    def _fetch(self, now: float) -> bool:
        """Refetch if the rate limit allows; True when new keys arrived."""
        if self._attempted_at is not None and now < self._attempted_at + self._min_refetch_interval:
            return False
        self._attempted_at = now
        try:
            keys = parse_jwks(_fetch_on_request_path(self.url))
        except (OutboundError, JwksInvalid) as exc:
            reason = exc.code if isinstance(exc, OutboundError) else str(exc)
            logger.warning("JWKS fetch from %s failed: %s", self.url, reason)
            return False
        self._keys = keys
        self._fetched_at = now
        return True

    def _fail_if_unusable(self, now: float) -> None:
        if self._keys is None or now >= self._fetched_at + self._cache_ttl + self._max_stale:
            raise TokenInvalid(TokenFailure.JWKS_UNAVAILABLE)


_shared_sources: OrderedDict[str, JwksKeySource] = OrderedDict()
_shared_lock = threading.Lock()


def jwks_key_source(url: str) -> JwksKeySource:
    """The process-wide source for `url`, so every request verifying against one IdP shares its cache."""
    with _shared_lock:
        source = _shared_sources.get(url)
        if source is None:
            source = _shared_sources[url] = JwksKeySource(url)
            while len(_shared_sources) > MAX_SHARED_SOURCES:
                _shared_sources.popitem(last=False)
        else:
            _shared_sources.move_to_end(url)
        return source


def clear_jwks_cache() -> None:
    """Forget every shared source (tests; an operator-triggered key refresh)."""
    with _shared_lock:
        _shared_sources.clear()


# --- OpenID Connect discovery ---------------------------------------------------------------
@dataclass(frozen=True)
class OidcProviderMetadata:
    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None
    token_endpoint: str | None
    userinfo_endpoint: str | None
    signing_algorithms: tuple[str, ...]  # id_token_signing_alg_values_supported, as published


def discovery_url_for(issuer_or_discovery_url: str) -> str:
    """The discovery document URL, given either an issuer or the discovery URL itself."""
    if issuer_or_discovery_url.endswith(WELL_KNOWN_PATH):
        return issuer_or_discovery_url
    return issuer_or_discovery_url.rstrip("/") + WELL_KNOWN_PATH


def _failure(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, code="oidc_discovery_failed", fields={field: [message]})


def _check_endpoint(url: str, name: str, field: str) -> str:
    try:
        return validate_outbound_url(url, field=field)
    except InvalidRequest as exc:
        message = f"The discovery document's `{name}` is refused: {exc.message}"
        raise InvalidRequest(message, code=exc.code, fields={field: [message]}) from None


def fetch_discovery(
    issuer_or_discovery_url: str, *, expected_issuer: str | None = None, field: str = "discovery_url"
) -> OidcProviderMetadata:
    """Fetch and check a provider's discovery document. Raises InvalidRequest naming `field`.

    Codes: the SSRF guard's for a refused URL, else `oidc_discovery_failed`.
    """
    url = validate_outbound_url(discovery_url_for(issuer_or_discovery_url), field=field)
    try:
        document: Any = _fetch_on_request_path(url)
    except OutboundError as exc:
        raise _failure(field, f"The discovery document could not be fetched: {exc.message}") from None
    if not isinstance(document, dict):
        raise _failure(field, "The discovery document is not a JSON object.")
    issuer = document.get("issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(issuer, str) or not issuer or not isinstance(jwks_uri, str) or not jwks_uri:
        raise _failure(field, "The discovery document lacks `issuer` or `jwks_uri`.")
    discovered_from = url.removesuffix(WELL_KNOWN_PATH)
    if issuer.rstrip("/") != discovered_from.rstrip("/"):
        raise _failure(field, "The discovery document names an issuer other than the URL it was fetched from.")
    if expected_issuer is not None and issuer != expected_issuer:
        raise _failure(field, "The discovery document's issuer is not the configured issuer.")
    _check_endpoint(jwks_uri, "jwks_uri", field)
    endpoints: dict[str, str | None] = {}
    for name in _OPTIONAL_ENDPOINTS:
        value = document.get(name)
        endpoints[name] = _check_endpoint(value, name, field) if isinstance(value, str) else None
    algorithms = document.get("id_token_signing_alg_values_supported")
    signing_algorithms = (
        tuple(item for item in algorithms if isinstance(item, str)) if isinstance(algorithms, list) else ()
    )
    return OidcProviderMetadata(issuer=issuer, jwks_uri=jwks_uri, signing_algorithms=signing_algorithms, **endpoints)
