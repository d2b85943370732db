"""Humans deciding parked requests, approvals expiring, and the org's approval webhook."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from keyward.accounts.models import Account, normalize_email
from keyward.approvals.models import Approval, ApprovalStatus, ApprovalWebhook, requester_emails
from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, AuditContext, record_committed_event, record_event
from keyward.core.exceptions import Conflict, Forbidden
from keyward.crypto.envelope import fingerprint
from keyward.net.ssrf import validate_outbound_url
from keyward.tenancy.models import Org

EXPIRE_BATCH = 500


def _record(
    approval: Approval,
    event_type: str,
    *,
    actor,
    context,
    reason: str = "",
    outcome: str = Outcome.SUCCESS,
    reason_code: str = "",
    write=record_event,
) -> None:
    write(
        org=approval.org,
        event_type=event_type,
        outcome=outcome,
        reason_code=reason_code,
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
    """Approve or deny a pending approval, once. An approver never decides their own request.

    A denial's `expires_at` becomes the moment it lapses (the gate lets the identical request ask
    again `approval_denial_seconds` after the decision).
    """
    try:
        approval, ran_out = _decide_locked(approval, approve, actor, reason, audit_context)
    except Forbidden as refusal:  # an approver deciding their own request: worth a row of its own
        _record(
            approval,
            events.APPROVAL_DECISION_REFUSED,
            actor=actor,
            context=audit_context,
            outcome=Outcome.DENIED,
            reason_code=refusal.code,
            write=record_committed_event,
        )
        raise
    if ran_out:
        raise Conflict("This approval has expired; the agent must ask again.", code="approval_expired")
    return approval


def _decide_locked(
    approval: Approval, approve: bool, actor: Account, reason: str, audit_context: AuditContext | None
) -> tuple[Approval, bool]:
    with transaction.atomic():
        approval = Approval.objects.select_for_update().select_related("org", "agent").get(pk=approval.pk)
        now = timezone.now()
        # Checked under the lock, so no decision lands after the deadline; the expiry commits, then 409.
        ran_out = expire_due(approval.org, only=approval, now=now) > 0
        if not ran_out:
            _check_decidable(approval, actor)
            approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
            approval.decided_by, approval.decided_at, approval.reason = actor.email, now, reason[:500]
            lasts = approval.org.approval_grant_seconds if approve else approval.org.approval_denial_seconds
            approval.expires_at = now + timedelta(seconds=lasts)
            approval.save(update_fields=["status", "decided_by", "decided_at", "reason", "expires_at"])
            event = events.APPROVAL_APPROVED if approve else events.APPROVAL_DENIED
            _record(approval, event, actor=actor, context=audit_context, reason=reason)
    return approval, ran_out


def _check_decidable(approval: Approval, actor: Account) -> None:
    if approval.status == ApprovalStatus.EXPIRED:
        raise Conflict("This approval has expired; the agent must ask again.", code="approval_expired")
    if approval.status != ApprovalStatus.PENDING:
        raise Conflict(f"This approval was already {approval.status}.", code="approval_already_decided")
    if normalize_email(actor.email) in requester_emails(approval.end_user, approval.end_user_email):
        raise Forbidden("You cannot decide a request made on your own behalf.", code="self_approval")


def expire_due(
    org: Org | None = None,
    *,
    only: Approval | None = None,
    request_key: str | None = None,
    now: datetime | None = None,
) -> int:
    """Expire pending approvals past their deadline and approved ones never used. Each is audited."""
    now = now or timezone.now()
    due = Approval.objects.filter(
        status__in=[ApprovalStatus.PENDING, ApprovalStatus.APPROVED], expires_at__lte=now
    ).select_related("org", "agent")
    if org is not None:
        due = due.filter(org=org)
    if only is not None:
        due = due.filter(pk=only.pk)
    if request_key is not None:
        due = due.filter(request_key=request_key)
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
