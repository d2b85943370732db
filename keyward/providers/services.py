"""Provider rules: create, update, rotate the sealed secret, and open it for the broker.

A secret's plaintext only ever passes through here on its way into `ProviderSecret.seal_secret`
(or out of `unseal_secret` to the broker). It is never returned by the API, logged, audited or
put in an exception message; responses and audit rows carry its version and fingerprint only.
"""

import hmac
import json

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AuditContext, record_event
from keyward.core.exceptions import Conflict, InvalidRequest, ServiceError
from keyward.crypto.envelope import fingerprint
from keyward.crypto.errors import DecryptionError
from keyward.providers import kinds
from keyward.providers.kinds import PreparedSecret
from keyward.providers.models import Provider, ProviderKind, ProviderSecret
from keyward.tenancy.models import Org

DEFAULT_MAX_TTL_SECONDS = 3600
UPDATABLE_FIELDS = ("description", "config", "scopes", "max_ttl_seconds")


def providers_with_secret_metadata(queryset: models.QuerySet | None = None) -> models.QuerySet:
    """Providers annotated with the current secret's fingerprint in the same query (no sealed bytes loaded)."""
    current = ProviderSecret.objects.filter(provider=models.OuterRef("pk"), version=models.OuterRef("secret_version"))
    queryset = Provider.objects.all() if queryset is None else queryset
    return queryset.annotate(current_fingerprint=models.Subquery(current.values("fingerprint")[:1]))


def create_provider(
    *,
    org: Org,
    name: str,
    kind: str,
    actor=None,
    audit_context: AuditContext | None = None,
    description: str = "",
    config: dict | None = None,
    scopes: list[str] | None = None,
    max_ttl_seconds: int | None = None,
    secret=None,
) -> Provider:
    """Create a provider, sealing its first secret version when one is given. Audited as provider.created."""
    rules = kinds.rules_for(kind)
    provider = Provider(
        org=org,
        name=name,
        kind=kind,
        description=description,
        config=kinds.validate_config(kind, config or {}, name=name),
        scopes=_catalogue(kind, scopes),
        max_ttl_seconds=max_ttl_seconds or min(DEFAULT_MAX_TTL_SECONDS, settings.KEYWARD_MAX_CREDENTIAL_TTL),
    )
    prepared = kinds.prepare_secret(kind, secret) if secret is not None or rules.scopes_from_secret else None
    try:
        with transaction.atomic():
            provider.save(force_insert=True)
            detail = {}
            if prepared is not None:
                row = _store_secret(provider, prepared)
                detail = {"version": row.version, "fingerprint": row.fingerprint}
            _record(provider, events.PROVIDER_CREATED, actor, audit_context, **detail)
    except IntegrityError:
        raise Conflict("A provider with this name already exists.", code="provider_exists") from None
    return provider


def update_provider(
    provider: Provider, *, actor=None, audit_context: AuditContext | None = None, **changes
) -> Provider:
    """Change description, config, scopes or max TTL (never name, kind or secret). Audited with the changed fields."""
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise TypeError(f"not updatable provider fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        provider = _locked(provider)
        if "config" in changes:
            changes["config"] = kinds.validate_config(provider.kind, changes["config"], name=provider.name)
            _refuse_redirecting_the_secret(provider, changes["config"])
        if "scopes" in changes:
            changes["scopes"] = _catalogue(provider.kind, changes["scopes"])
        changed = sorted(field for field, value in changes.items() if getattr(provider, field) != value)
        for field in changed:
            setattr(provider, field, changes[field])
        if changed:
            provider.save(update_fields=[*changed, "updated_at"])
            _record(provider, events.PROVIDER_UPDATED, actor, audit_context, changed=changed)
    return provider


def _refuse_redirecting_the_secret(provider: Provider, config: dict) -> None:
    moved = [key for key in kinds.SECRET_DESTINATION_KEYS if config.get(key) != provider.config.get(key)]
    if moved and provider.secret_version:
        raise Conflict(
            f"Changing {', '.join(moved)} changes where the secret is sent: send the secret again with the new "
            f"config (POST /v1/secrets/{provider.name}/rotate with secret and config).",
            code="secret_required",
        )


def rotate_secret(
    provider: Provider, *, secret, config: dict | None = None, actor=None, audit_context: AuditContext | None = None
) -> Provider:
    """Seal `secret` as the provider's next version, optionally with a new config (where the secret is
    sent may only change together with the secret). Older versions stay stored. Audited, without the secret."""
    prepared = kinds.prepare_secret(provider.kind, secret)
    with transaction.atomic():
        provider = _locked(provider)
        changed = []
        if config is not None:
            config = kinds.validate_config(provider.kind, config, name=provider.name)
            if config != provider.config:
                provider.config, changed = config, ["config"]
                provider.save(update_fields=["config", "updated_at"])
        row = _store_secret(provider, prepared)
        _record(
            provider,
            events.PROVIDER_SECRET_ROTATED,
            actor,
            audit_context,
            version=row.version,
            fingerprint=row.fingerprint,
            **({"changed": changed} if changed else {}),
        )
    return provider


def holds_current_secret(provider: Provider, secret) -> bool:
    """Whether `secret` is already the provider's current version (so re-running a rotation can change
    nothing). A current version that does not open never matches: a new version is the fix for it."""
    plaintext = kinds.prepare_secret(provider.kind, secret).plaintext
    if not provider.secret_version:
        return False
    try:
        current = current_secret(provider)
    except ServiceError:
        return False
    return hmac.compare_digest(current, plaintext)


def current_secret(provider: Provider) -> bytes:
    """The plaintext of the provider's current secret version, for the broker's minters. Never log it.

    Raises ServiceError `provider_secret_missing` (409) when no secret was ever stored, and
    `provider_secret_unreadable` (503) when the stored value does not open (wrong master key, or a
    row tampered with or copied from another provider).
    """
    row = None
    if provider.secret_version:
        row = (
            ProviderSecret.objects.select_related("provider__org")
            .filter(provider_id=provider.pk, version=provider.secret_version)
            .first()
        )
    if row is None:
        raise ServiceError(
            f"Provider {provider.name!r} has no secret yet; rotate one in first.",
            code="provider_secret_missing",
            status_code=409,
        )
    try:
        return row.unseal_secret()
    except DecryptionError:
        raise ServiceError(
            f"The secret of provider {provider.name!r} cannot be opened.",
            code="provider_secret_unreadable",
            status_code=503,
        ) from None


def static_secret_for_scope(provider: Provider, scope: str) -> str:
    """The stored secret a `static` provider hands out for exactly `scope` (no wildcards). Never log it.

    Raises ServiceError `scope_not_allowed` (403) when the provider stores nothing for that scope,
    and `provider_kind_mismatch` (409) when the provider is not a static one.
    """
    if provider.kind != ProviderKind.STATIC:
        raise ServiceError(
            f"Provider {provider.name!r} is not a static provider.", code="provider_kind_mismatch", status_code=409
        )
    value = json.loads(current_secret(provider)).get(scope)
    if not isinstance(value, str):
        raise ServiceError(
            f"Provider {provider.name!r} stores no secret for scope {scope[:200]!r}.",
            code="scope_not_allowed",
            status_code=403,
        )
    return value


def _catalogue(kind: str, scopes: list[str] | None) -> list[str]:
    """The scope catalogue an admin may set. A static provider's comes from its secret's keys only."""
    if kinds.rules_for(kind).scopes_from_secret:
        if scopes:
            message = "A static provider's scopes are the keys of its secret; rotate the secret to change them."
            raise InvalidRequest(message, fields={"scopes": [message]})
        return []
    return list(dict.fromkeys(scopes or []))


def _locked(provider: Provider) -> Provider:
    return Provider.objects.select_related("org").select_for_update(of=("self",)).get(pk=provider.pk)


def _store_secret(provider: Provider, prepared: PreparedSecret) -> ProviderSecret:
    """Seal the next version and make it current. Call inside a transaction holding the provider's row lock."""
    row = ProviderSecret(
        provider=provider, version=provider.secret_version + 1, fingerprint=fingerprint(prepared.plaintext)
    )
    row.seal_secret(prepared.plaintext)
    row.save(force_insert=True)
    provider.secret_version, provider.rotated_at = row.version, timezone.now()
    fields = ["secret_version", "rotated_at", "updated_at"]
    if prepared.scopes is not None:
        provider.scopes = prepared.scopes
        fields.append("scopes")
    provider.save(update_fields=fields)
    provider.current_fingerprint = row.fingerprint
    return row


def _record(provider: Provider, event_type: str, actor, context: AuditContext | None, **detail) -> None:
    record_event(
        org=provider.org,
        event_type=event_type,
        outcome=Outcome.SUCCESS,
        actor=actor,
        context=context,
        provider=provider.name,
        detail={"provider_id": provider.pk, "kind": provider.kind, **detail},
    )
