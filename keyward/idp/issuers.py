"""Issuer ownership: an issuer's end-user tokens route to exactly one org (DESIGN.md §3).

The broker picks the connector that verifies an end-user token from the token's unverified `iss`
and `aud`. If any org could configure any issuer, a stranger could register another audience that
a victim's tokens already carry (Auth0's carry two) and capture the victim's routing, or break it
(a token whose audiences name two orgs is refused). So an issuer belongs to one org: an IdpIssuer
row, unique by issuer, claimed by the first org that configures a connector with it and released
when that org's last such connector goes. Claims are written under the row's lock and the unique
index, so two orgs racing for one issuer cannot both win; verification only ever considers the
owning org's connectors, so a connector that slipped past these checks still routes nothing.

Multi-tenant IdPs (Google, Entra's common endpoint) sign every customer's tokens with one issuer,
each customer having its own audience (client id). The operator lists those issuers in
KEYWARD_SHARED_ISSUERS: they have no owner, each (issuer, audience) still belongs to one org, and
their tokens must name exactly one audience so that none can straddle two orgs.

Residual risk, by design for now: nothing proves that an org controls the issuer it configures.
The first org wins; if a stranger got there first, the real owner gets `409 issuer_taken` and a
platform operator removes the stranger's claim (docs/self-hosting.md, "Issuer ownership").
"""

from django.conf import settings
from django.db import IntegrityError, transaction

from keyward.core.exceptions import Conflict
from keyward.idp.models import IdpConnector, IdpIssuer
from keyward.tenancy.models import Org

_CLAIM_ATTEMPTS = 2


def is_shared_issuer(issuer: str) -> bool:
    """True for an operator-listed multi-tenant issuer, which no org owns."""
    return issuer in settings.KEYWARD_SHARED_ISSUERS


def _issuer_taken() -> Conflict:
    return Conflict(
        "Another org already uses this issuer, and an issuer's tokens can route to one org only. "
        "If the issuer is yours, ask the platform operator to release it.",
        code="issuer_taken",
    )


def _used_elsewhere(org: Org, issuer: str) -> bool:
    """Another org owns the issuer, or (data from before ownership existed) has a connector with it."""
    return (
        IdpIssuer.objects.filter(issuer=issuer).exclude(org=org).exists()
        or IdpConnector.objects.filter(issuer=issuer).exclude(org=org).exists()
    )


def ensure_issuer_available(org: Org, issuer: str) -> None:
    """Refuse early (before any discovery fetch) an issuer another org uses; `claim_issuer` decides."""
    if not is_shared_issuer(issuer) and _used_elsewhere(org, issuer):
        raise _issuer_taken()


def claim_issuer(org: Org, issuer: str, *, replacing: str | None = None) -> None:
    """Make `issuer` the org's, or raise Conflict `issuer_taken`. Call inside the connector's transaction.

    `replacing` is the issuer the connector had before; its row is locked too, in a fixed order
    with the new one, so two concurrent changes cannot deadlock and `release_issuer_if_unused`
    can decide after the save.
    """
    for name in sorted({issuer, replacing} - {None}):
        if name == issuer:
            if not is_shared_issuer(issuer):
                _claim(org, issuer)
        else:
            IdpIssuer.objects.select_for_update().filter(issuer=name, org=org).first()


def _claim(org: Org, issuer: str) -> None:
    for _attempt in range(_CLAIM_ATTEMPTS):
        claim = IdpIssuer.objects.select_for_update().filter(issuer=issuer).first()
        if claim is None:
            if _used_elsewhere(org, issuer):
                break
            try:
                with transaction.atomic():
                    IdpIssuer.objects.create(issuer=issuer, org=org)
                return
            except IntegrityError:
                continue  # another request claimed it at this moment; its row is committed now, look again
        if claim.org_id == org.pk:
            return
        break
    raise _issuer_taken()


def release_issuer_if_unused(org: Org, issuer: str) -> None:
    """Free an issuer the org has no connector for any more, so that another org may claim it."""
    claim = IdpIssuer.objects.select_for_update().filter(issuer=issuer, org=org).first()
    if claim is not None and not IdpConnector.objects.filter(org=org, issuer=issuer).exists():
        claim.delete()
