"""Minters: one module per provider kind, behind one small interface.

`mint(request) -> Minted` makes the credential; `revoke(issued, handle)` (optional) revokes it
upstream, given the sealed handle the minter returned as `Minted.revocation_handle`, and
`discard(provider, handle)` (with `revoke`) revokes, best effort, one that was minted but whose
issuance then failed, so it was never handed out. A minter raises
`MintError` for any provider failure; the pipeline turns that into 502 `native_mint_failed` and
records nothing but the audit row.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from keyward.agents.models import Agent
from keyward.providers.models import Provider, ProviderKind
from keyward.tenancy.models import Org


@dataclass(frozen=True)
class MintRequest:
    org: Org
    agent: Agent
    provider: Provider
    end_user: str
    scopes: list[str]
    environment: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    chain: list[str]
    user_token: str | None = None
    # A delegated request's parent expiry: a minter that cannot honour `expires_at` must not outlive it.
    not_after: datetime | None = None

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


@dataclass(frozen=True)
class Minted:
    """What a minter made. `credential` is secret; `native` holds only non-secret facts for the record."""

    credential: Any = field(repr=False)
    token_type: str
    expires_at: datetime
    native: dict = field(default_factory=dict)
    revocable_upstream: bool = False
    # What `revoke` will need (GitHub: the token itself). Secret: kept sealed, bound to org + jti.
    revocation_handle: bytes | None = field(default=None, repr=False)
    # Set when the provider's minimum lifetime (AWS STS: 900 s) beat the TTL asked for: the answer says so,
    # and `expires_at` (the provider's real expiry) is recorded as it is instead of being capped at the TTL.
    ttl_clamped_up_to: int | None = None


class MintError(Exception):
    """The provider would not mint. `upstream_status`/`upstream_error` are safe to audit; bodies never are."""

    def __init__(self, message: str, *, upstream_status: int | None = None, upstream_error: str = ""):
        super().__init__(message)
        self.upstream_status = upstream_status
        self.upstream_error = upstream_error


class Minter(Protocol):
    def mint(self, request: MintRequest) -> Minted: ...


# Kinds whose minter makes the credential itself, without calling the provider.
LOCAL_KINDS = frozenset({ProviderKind.KEYWARD_JWT, ProviderKind.STATIC})


def calls_provider(provider: Provider) -> bool:
    """Whether minting calls out to the provider: then a credential exists upstream once it ran."""
    return provider.kind not in LOCAL_KINDS


def minter_for(provider: Provider) -> Minter:
    from broker.minters import (
        aws_sts,
        github_app,
        keyward_jwt,
        oauth2_client_credentials,
        oauth2_token_exchange,
        static,
    )

    minters: dict[str, Minter] = {
        ProviderKind.KEYWARD_JWT: keyward_jwt,
        ProviderKind.STATIC: static,
        ProviderKind.GITHUB_APP: github_app,
        ProviderKind.AWS_STS: aws_sts,
        ProviderKind.OAUTH2_CLIENT_CREDENTIALS: oauth2_client_credentials,
        ProviderKind.OAUTH2_TOKEN_EXCHANGE: oauth2_token_exchange,
    }
    minter = minters.get(provider.kind)
    if minter is None:
        raise MintError(f"Providers of kind {provider.kind!r} cannot mint yet.", upstream_error="kind_not_supported")
    return minter
