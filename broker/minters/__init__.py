"""Minters: one module per provider kind, behind one small interface.

`mint(request) -> Minted` makes the credential; `revoke(issued)` (optional) revokes it upstream.
A minter raises `MintError` for any provider failure; the pipeline turns that into 502
`native_mint_failed` and records nothing but the audit row.
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


class MintError(Exception):
    """The provider would not mint. `upstream_status`/`upstream_error` are safe to audit; bodies never are."""

    def __init__(self, message: str, *, upstream_status: int | None = None, upstream_error: str = ""):
        super().__init__(message)
        self.upstream_status = upstream_status
        self.upstream_error = upstream_error


class Minter(Protocol):
    def mint(self, request: MintRequest) -> Minted: ...


def minter_for(provider: Provider) -> Minter:
    from broker.minters import keyward_jwt, static

    minters: dict[str, Minter] = {ProviderKind.KEYWARD_JWT: keyward_jwt, ProviderKind.STATIC: static}
    minter = minters.get(provider.kind)
    if minter is None:
        raise MintError(f"Providers of kind {provider.kind!r} cannot mint yet.", upstream_error="kind_not_supported")
    return minter
