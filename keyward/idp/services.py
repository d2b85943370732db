"""IdP connector rules: outbound URL checks, OIDC discovery, issuer ownership, uniqueness, tenant routing.

Writes re-read the connector under a row lock scoped to the caller's org inside their transaction,
so a write never commits against a connector that is not (or no longer) the caller's org's.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AuditContext, record_event
from keyward.core.exceptions import Conflict, InvalidRequest, NotFound
from keyward.idp.dev import dev_issuer_prefix
from keyward.idp.issuers import claim_issuer, ensure_issuer_available, release_issuer_if_unused
from keyward.idp.models import IdpConnector, IdpEmailDomain, IdpKind
from keyward.jose.jwks import fetch_discovery
from keyward.net import dnstxt
from keyward.net.errors import OutboundError
from keyward.net.ssrf import validate_outbound_url
from keyward.tenancy.models import Org
from keyward.tenancy.scoping import scope_to_org

EDITABLE_FIELDS = (
    "name",
    "issuer",
    "audience",
    "jwks_uri",
    "discovery_url",
    "allowed_algorithms",
    "oidc_client_id",
)


def _check_issuer(org: Org, issuer: str) -> None:
    """Refuse an issuer that is keyward's own dev IdP's, or that another org owns."""
    if issuer.startswith(dev_issuer_prefix()):
        message = f"Issuers under {dev_issuer_prefix()} belong to keyward's built-in dev IdP."
        raise InvalidRequest(message, code="issuer_reserved", fields={"issuer": [message]})
    ensure_issuer_available(org, issuer)


def _resolve_key_location(fields: dict) -> None:
    """Validate the JWKS/discovery URLs (SSRF guard) and fill `jwks_uri` from discovery when needed."""
    jwks_uri, discovery_url = fields.get("jwks_uri") or "", fields.get("discovery_url") or ""
    if not jwks_uri and not discovery_url:
        message = "Give jwks_uri or discovery_url."
        raise InvalidRequest(message, fields={"jwks_uri": [message]})
    if discovery_url:
        fields["discovery_url"] = validate_outbound_url(discovery_url, field="discovery_url")
        if not jwks_uri:
            jwks_uri = fetch_discovery(fields["discovery_url"], expected_issuer=fields["issuer"]).jwks_uri
    fields["jwks_uri"] = validate_outbound_url(jwks_uri, field="jwks_uri")


def _locked_connector(pk: int, org: Org) -> IdpConnector:
    """The connector, row-locked, provided it is still the org's: the membership check before commit."""
    connector = scope_to_org(IdpConnector.objects.select_for_update(), org).filter(pk=pk).first()
    if connector is None:
        raise NotFound("No such identity provider.")
    _ensure_editable(connector)
    return connector


def _domain_conflict(message: str) -> Conflict:
    return Conflict(message, code="email_domain_taken")


def _set_domains(connector: IdpConnector, domains: list[str]) -> None:
    """Make the connector's claims exactly `domains`: kept claims keep their state, new ones start unverified."""
    wanted = set(domains)
    verified_elsewhere = IdpEmailDomain.objects.filter(domain__in=wanted, verified_at__isnull=False).exclude(
        org_id=connector.org_id
    )
    if verified_elsewhere.exists():
        raise _domain_conflict(
            "These email domains are verified by another org: "
            + ", ".join(sorted(verified_elsewhere.values_list("domain", flat=True)))
        )
    on_other_connectors = IdpEmailDomain.objects.filter(org_id=connector.org_id, domain__in=wanted).exclude(
        connector=connector
    )
    if on_other_connectors.exists():
        raise _domain_conflict(
            "These email domains already route to another of your identity providers: "
            + ", ".join(sorted(on_other_connectors.values_list("domain", flat=True)))
        )
    connector.email_domains.exclude(domain__in=wanted).delete()
    existing = set(connector.email_domains.values_list("domain", flat=True))
    try:
        with transaction.atomic():
            IdpEmailDomain.objects.bulk_create(
                IdpEmailDomain(org_id=connector.org_id, connector=connector, domain=domain)
                for domain in sorted(wanted - existing)
            )
    except IntegrityError:
        raise _domain_conflict("An email domain was claimed at the same moment; try again.") from None


def _idp_conflict() -> Conflict:
    return Conflict(
        "An identity provider with this issuer and audience, or this name, already exists.", code="idp_conflict"
    )


def _record(connector: IdpConnector, *, event_type: str, actor, context: AuditContext | None, changed=()) -> None:
    detail = {"connector_id": connector.pk, "name": connector.name, "issuer": connector.issuer}
    if changed:
        detail["changed"] = sorted(changed)
    record_event(
        org=connector.org, event_type=event_type, outcome=Outcome.SUCCESS, actor=actor, context=context, detail=detail
    )


def create_connector(
    *, org: Org, actor=None, audit_context: AuditContext | None = None, email_domains: list[str] | None = None, **fields
) -> IdpConnector:
    """A new OIDC connector for `org`. Raises InvalidRequest, or Conflict `issuer_taken` /
    `idp_conflict` / `email_domain_taken`."""
    _check_issuer(org, fields["issuer"])
    _resolve_key_location(fields)
    connector = IdpConnector(org=org, kind=IdpKind.OIDC, **fields)
    try:
        with transaction.atomic():
            claim_issuer(org, connector.issuer)
            connector.save()
            _set_domains(connector, email_domains or [])
            _record(connector, event_type=events.IDP_CREATED, actor=actor, context=audit_context)
    except IntegrityError:
        raise _idp_conflict() from None
    return connector


def update_connector(
    connector: IdpConnector,
    *,
    org: Org,
    actor=None,
    audit_context: AuditContext | None = None,
    email_domains: list[str] | None = None,
    **changes,
) -> IdpConnector:
    """Change an org's connector (`org` is the caller's; another org's connector is a 404)."""
    _ensure_editable(connector)
    fields = {name: getattr(connector, name) for name in EDITABLE_FIELDS} | changes
    if "issuer" in changes:
        _check_issuer(org, fields["issuer"])
    if {"jwks_uri", "discovery_url", "issuer"} & changes.keys():
        if "discovery_url" in changes and "jwks_uri" not in changes:
            fields["jwks_uri"] = ""
        _resolve_key_location(fields)
    changed = set(changes) | ({"email_domains"} if email_domains is not None else set())
    try:
        with transaction.atomic():
            current = _locked_connector(connector.pk, org)
            previous_issuer = current.issuer
            claim_issuer(org, fields["issuer"], replacing=previous_issuer)
            for name in EDITABLE_FIELDS:
                setattr(current, name, fields[name])
            current.save()
            if previous_issuer != current.issuer:
                release_issuer_if_unused(org, previous_issuer)
            if email_domains is not None:
                _set_domains(current, email_domains)
            _record(current, event_type=events.IDP_UPDATED, actor=actor, context=audit_context, changed=changed)
    except IntegrityError:
        raise _idp_conflict() from None
    return current


@transaction.atomic
def delete_connector(
    connector: IdpConnector, *, org: Org, actor=None, audit_context: AuditContext | None = None
) -> None:
    """Delete an org's connector with its domain claims, freeing its issuer if no other connector uses it."""
    _ensure_editable(connector)
    current = _locked_connector(connector.pk, org)
    _record(current, event_type=events.IDP_DELETED, actor=actor, context=audit_context)
    current.delete()
    release_issuer_if_unused(org, current.issuer)


def _ensure_editable(connector: IdpConnector) -> None:
    if connector.kind == IdpKind.DEV:
        raise Conflict("The built-in dev IdP is managed by keyward.", code="dev_idp_read_only")


# --- email domains: DNS-verified tenant routing ------------------------------------------------


def verify_domain(
    connector: IdpConnector, domain: str, *, org: Org, actor=None, audit_context: AuditContext | None = None
) -> IdpEmailDomain:
    """Mark the connector's claim of `domain` verified once its TXT record is published.

    The record is `keyward-verification=<token>` at `_keyward.<domain>`: only someone who controls
    the domain's DNS can publish it. Once verified, the domain routes sign-ins to this org only and
    other orgs' unverified claims of it are removed. Raises NotFound, or Conflict
    `domain_not_verified` / `email_domain_taken`. The DNS lookup happens before any lock is taken.
    """
    claim = scope_to_org(IdpEmailDomain.objects.all(), org).filter(connector_id=connector.pk, domain=domain).first()
    if claim is None:
        raise NotFound(f"This identity provider does not claim {domain!r}.", code="domain_not_claimed")
    if claim.verified:
        return claim
    _require_published_record(claim)
    with transaction.atomic():
        # Every org's claims of the domain, locked in one order: concurrent verifications queue up.
        claims = list(
            IdpEmailDomain.objects.select_for_update(of=("self",))
            .select_related("org")
            .filter(domain=domain)
            .order_by("pk")
        )
        locked = next((row for row in claims if row.pk == claim.pk and row.org_id == org.pk), None)
        if locked is None or locked.verification_token != claim.verification_token:
            raise NotFound(f"This identity provider no longer claims {domain!r}.", code="domain_not_claimed")
        if locked.verified:
            return locked
        if any(row.verified for row in claims):
            raise _domain_conflict(f"{domain} is already verified by another org.")
        locked.verified_at = timezone.now()
        try:
            with transaction.atomic():
                locked.save(update_fields=["verified_at"])
        except IntegrityError:
            raise _domain_conflict(f"{domain} is already verified by another org.") from None
        _remove_claims([row for row in claims if row.pk != locked.pk])
        record_event(
            org=org,
            event_type=events.IDP_DOMAIN_VERIFIED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"connector_id": connector.pk, "domain": domain},
        )
    return locked


def _require_published_record(claim: IdpEmailDomain) -> None:
    how = f"Publish a DNS TXT record {claim.verification_record!r} at {claim.verification_name}, then try again."
    try:
        records = dnstxt.txt_records(claim.verification_name)
    except OutboundError as exc:
        raise Conflict(f"{exc.message} {how}", code="domain_not_verified") from None
    if claim.verification_record not in (record.strip() for record in records):
        raise Conflict(f"No matching TXT record found at {claim.verification_name}. {how}", code="domain_not_verified")


def _remove_claims(claims: list[IdpEmailDomain]) -> None:
    """Drop other orgs' (unverified) claims of a domain just verified, each audited in its own org."""
    for claim in sorted(claims, key=lambda row: row.org_id):
        record_event(
            org=claim.org,
            event_type=events.IDP_DOMAIN_CLAIM_REMOVED,
            outcome=Outcome.SUCCESS,
            reason_code="verified_by_another_org",
            context=AuditContext(),
            detail={"connector_id": claim.connector_id, "domain": claim.domain},
        )
        claim.delete()


def tenant_for_email(email: str) -> dict:
    """Home-realm discovery: the org and IdP a (verified) email domain signs in with. Raises NotFound."""
    domain = email.strip().lower().rsplit("@", 1)[-1]
    claim = (
        IdpEmailDomain.objects.select_related("org", "connector")
        .filter(domain=domain, verified_at__isnull=False)
        .first()
    )
    if claim is None:
        raise NotFound("No org routes this email domain to an identity provider.", code="no_tenant")
    connector = claim.connector
    return {
        "org": {"slug": claim.org.slug, "name": claim.org.name},
        "idp": {
            "name": connector.name,
            "kind": connector.kind,
            "issuer": connector.issuer,
            "oidc_client_id": connector.oidc_client_id,
        },
    }
