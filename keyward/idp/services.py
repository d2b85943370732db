"""IdP connector rules: validation of outbound URLs, OIDC discovery, uniqueness and tenant routing."""

from django.db import IntegrityError, transaction

from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AuditContext, record_event
from keyward.core.exceptions import Conflict, InvalidRequest
from keyward.idp.models import IdpConnector, IdpEmailDomain, IdpKind
from keyward.jose.jwks import fetch_discovery
from keyward.net.ssrf import validate_outbound_url
from keyward.tenancy.models import Org

EDITABLE_FIELDS = (
    "name",
    "issuer",
    "audience",
    "jwks_uri",
    "discovery_url",
    "allowed_algorithms",
    "oidc_client_id",
)


def _resolve_key_location(fields: dict) -> None:
    """Validate the JWKS/discovery URLs (SSRF guard) and fill `jwks_uri` from discovery when needed."""
    jwks_uri, discovery_url = fields.get("jwks_uri") or "", fields.get("discovery_url") or ""
    if not jwks_uri and not discovery_url:
        message = "Give jwks_uri or discovery_url."
        raise InvalidRequest(message, fields={"jwks_uri": [message]})
    if discovery_url:
        fields["discovery_url"] = validate_outbound_url(discovery_url, field="discovery_url")
        if not jwks_uri:
            document = fetch_discovery(fields["discovery_url"])
            if document.issuer != fields["issuer"]:
                message = f"The discovery document names issuer {document.issuer!r}, not {fields['issuer']!r}."
                raise InvalidRequest(message, code="discovery_issuer_mismatch", fields={"issuer": [message]})
            jwks_uri = document.jwks_uri
    fields["jwks_uri"] = validate_outbound_url(jwks_uri, field="jwks_uri")


def _set_domains(connector: IdpConnector, domains: list[str]) -> None:
    taken = IdpEmailDomain.objects.filter(domain__in=domains).exclude(connector=connector)
    if taken.exists():
        message = "These email domains already route to an identity provider: " + ", ".join(
            sorted(taken.values_list("domain", flat=True))
        )
        raise Conflict(message, code="email_domain_taken")
    connector.email_domains.exclude(domain__in=domains).delete()
    existing = set(connector.email_domains.values_list("domain", flat=True))
    IdpEmailDomain.objects.bulk_create(
        IdpEmailDomain(connector=connector, domain=domain) for domain in sorted(set(domains) - existing)
    )


def _save(connector: IdpConnector, domains: list[str] | None, audit: dict) -> IdpConnector:
    try:
        with transaction.atomic():
            connector.save()
            if domains is not None:
                _set_domains(connector, domains)
            _record(connector, **audit)
    except IntegrityError:
        raise Conflict(
            "An identity provider with this issuer and audience, or this name, already exists.",
            code="idp_conflict",
        ) from None
    return connector


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
    _resolve_key_location(fields)
    audit = {"event_type": events.IDP_CREATED, "actor": actor, "context": audit_context}
    return _save(IdpConnector(org=org, kind=IdpKind.OIDC, **fields), email_domains or [], audit)


def update_connector(
    connector: IdpConnector,
    *,
    actor=None,
    audit_context: AuditContext | None = None,
    email_domains: list[str] | None = None,
    **changes,
) -> IdpConnector:
    _ensure_editable(connector)
    fields = {name: getattr(connector, name) for name in EDITABLE_FIELDS} | changes
    if {"jwks_uri", "discovery_url", "issuer"} & changes.keys():
        if "discovery_url" in changes and "jwks_uri" not in changes:
            fields["jwks_uri"] = ""
        _resolve_key_location(fields)
    for name in EDITABLE_FIELDS:
        setattr(connector, name, fields[name])
    changed = set(changes) | ({"email_domains"} if email_domains is not None else set())
    audit = {"event_type": events.IDP_UPDATED, "actor": actor, "context": audit_context, "changed": changed}
    return _save(connector, email_domains, audit)


@transaction.atomic
def delete_connector(connector: IdpConnector, *, actor=None, audit_context: AuditContext | None = None) -> None:
    _ensure_editable(connector)
    _record(connector, event_type=events.IDP_DELETED, actor=actor, context=audit_context)
    connector.delete()


def _ensure_editable(connector: IdpConnector) -> None:
    if connector.kind == IdpKind.DEV:
        raise Conflict("The built-in dev IdP is managed by keyward.", code="dev_idp_read_only")


def connector_for_email(email: str) -> IdpConnector | None:
    """Tenant SSO routing: the connector an email's domain routes to, if any."""
    domain = email.strip().lower().rsplit("@", 1)[-1]
    row = IdpEmailDomain.objects.select_related("connector__org").filter(domain=domain).first()
    return row.connector if row else None
