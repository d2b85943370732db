"""Humans deciding parked requests, approvals expiring, and the org's approval webhook."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from keyward.accounts.models import Account, normalize_email
from keyward.approvals.models import Approval, ApprovalStatus, ApprovalWebhook
from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, AuditContext, record_event
from keyward.core.exceptions import Conflict, Forbidden
from keyward.crypto.envelope import fingerprint
from keyward.net.ssrf import validate_outbound_url
from keyward.tenancy.models import Org

EXPIRE_BATCH = 500


def _record(approval: Approval, event_type: str, *, actor, context, reason: str = "") -> None:
    record_event(
        org=approval.org,
        event_type=event_type,
        outcome=Outcome.SUCCESS,
        actor=actor,
        context=context,
        end_user=approval.end_user,
        agent=approval.agent.name,
        delegation_chain=approval.delegation_chain,
        provider=approval.provider,
        scope=approval.scope,
        environment=approval.environment,
        detail={"approval_id": approval.pk, "reason": reason[:500]},
    )


def decide(
    approval: Approval,
    *,
    approve: bool,
    actor: Account,
    reason: str = "",
    audit_context: AuditContext | None = None,
) -> Approval:
    """Approve or deny a pending approval, once. An approver never decides their own request."""
    expire_due(approval.org, only=approval)
    with transaction.atomic():
        approval = Approval.objects.select_for_update().select_related("org", "agent").get(pk=approval.pk)
        if approval.status == ApprovalStatus.EXPIRED:
            raise Conflict("This approval has expired; the agent must ask again.", code="approval_expired")
        if approval.status != ApprovalStatus.PENDING:
            raise Conflict(f"This approval was already {approval.status}.", code="approval_already_decided")
        if normalize_email(approval.end_user) == normalize_email(actor.email):
            raise Forbidden("You cannot decide a request made on your own behalf.", code="self_approval")
        now = timezone.now()
        approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        approval.decided_by, approval.decided_at, approval.reason = actor.email, now, reason[:500]
        if approve:
            approval.expires_at = now + timedelta(seconds=approval.org.approval_grant_seconds)
        approval.save(update_fields=["status", "decided_by", "decided_at", "reason", "expires_at"])
        event = events.APPROVAL_APPROVED if approve else events.APPROVAL_DENIED
        _record(approval, event, actor=actor, context=audit_context, reason=reason)
    return approval


def expire_due(org: Org | None = None, *, only: Approval | None = None, now: datetime | None = None) -> int:
    """Expire pending approvals past their deadline and approved ones never used. Each is audited."""
    now = now or timezone.now()
    due = Approval.objects.filter(
        status__in=[ApprovalStatus.PENDING, ApprovalStatus.APPROVED], expires_at__lte=now
    ).select_related("org", "agent")
    if org is not None:
        due = due.filter(org=org)
    if only is not None:
        due = due.filter(pk=only.pk)
    expired = 0
    for approval in due.order_by("expires_at")[:EXPIRE_BATCH]:
        with transaction.atomic():
            changed = Approval.objects.filter(pk=approval.pk, status=approval.status, expires_at__lte=now).update(
                status=ApprovalStatus.EXPIRED
            )
            if changed:
                _record(approval, events.APPROVAL_EXPIRED, actor=Actor.system("approval-expiry"), context=None)
                expired += 1
    return expired


def set_webhook(org: Org, *, url: str, secret: str, actor=None, audit_context=None) -> ApprovalWebhook:
    """Point approval notifications at `url`, signed with `secret` (stored sealed, never returned)."""
    url = validate_outbound_url(url, field="url")
    with transaction.atomic():
        webhook = ApprovalWebhook.objects.select_for_update().filter(org=org).first() or ApprovalWebhook(org=org)
        webhook.secret_fingerprint = fingerprint(secret.encode())
        webhook.seal_destination(url, secret)
        webhook.save()
        record_event(
            org=org,
            event_type=events.APPROVAL_WEBHOOK_SET,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"host": webhook.host, "fingerprint": webhook.secret_fingerprint},
        )
    return webhook


def remove_webhook(org: Org, *, actor=None, audit_context=None) -> None:
    with transaction.atomic():
        deleted, _ = ApprovalWebhook.objects.filter(org=org).delete()
        if deleted:
            record_event(
                org=org,
                event_type=events.APPROVAL_WEBHOOK_REMOVED,
                outcome=Outcome.SUCCESS,
                actor=actor,
                context=audit_context,
            )
