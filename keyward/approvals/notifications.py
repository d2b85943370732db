"""Telling approvers a request is waiting: email to the org's admins and owners, and the org's
optional signed webhook. Both go through the outbox, written with the approval itself."""

from django.conf import settings
from django.core.mail import send_mail

from keyward.accounts.models import Account, Role, normalize_email
from keyward.approvals.models import Approval, ApprovalWebhook, requester_emails
from keyward.outbox import services as outbox
from keyward.outbox.models import OutboxMessage
from keyward.outbox.webhooks import post_signed

EMAIL = "approval_email"
WEBHOOK = "approval_webhook"


def approval_facts(approval: Approval) -> dict:
    return {
        "approval_id": approval.pk,
        "org": approval.org.slug,
        "agent": approval.agent.name,
        "end_user": approval.end_user,
        "end_user_email": approval.end_user_email,
        "provider": approval.provider,
        "scope": approval.scope,
        "environment": approval.environment,
        "ttl_seconds": approval.ttl_seconds,
        "delegation_chain": approval.delegation_chain,
        "expires_at": approval.expires_at.isoformat(),
        "review_url": f"{settings.KEYWARD_ISSUER}/approvals/{approval.pk}",
    }


def notify_new_approval(approval: Approval) -> None:
    """Call inside the transaction that created `approval`, so the notice and the approval commit together."""
    facts = approval_facts(approval)
    outbox.enqueue(approval.org, EMAIL, facts)
    if ApprovalWebhook.objects.filter(org=approval.org).exists():
        outbox.enqueue(approval.org, WEBHOOK, {"type": "approval.requested", **facts})


def approvers(org_id: int) -> list[str]:
    return list(
        Account.objects.filter(org_id=org_id, is_active=True, role__in=[Role.ADMIN, Role.OWNER]).values_list(
            "email", flat=True
        )
    )


@outbox.handler(EMAIL)
def deliver_email(message: OutboxMessage) -> None:
    facts = message.payload
    requester = requester_emails(facts["end_user"], facts.get("end_user_email", ""))
    recipients = [email for email in approvers(message.org_id) if normalize_email(email) not in requester]
    if not recipients:
        return
    subject = f"[keyward] Approval needed: {facts['agent']} wants {facts['provider']} {facts['scope']}"
    body = "\n".join(
        [
            f"{facts['agent']} is asking for a credential on behalf of {facts['end_user']}.",
            "",
            f"  provider:     {facts['provider']}",
            f"  scope:        {facts['scope']}",
            f"  environment:  {facts['environment']}",
            f"  lifetime:     {facts['ttl_seconds']} s",
            f"  chain:        {' → '.join(facts['delegation_chain'])}",
            f"  expires at:   {facts['expires_at']}",
            "",
            f"Review it: {facts['review_url']}",
        ]
    )
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:
        raise outbox.DeliveryError(f"smtp:{type(exc).__name__}") from None


@outbox.handler(WEBHOOK)
def deliver_webhook(message: OutboxMessage) -> None:
    webhook = ApprovalWebhook.objects.select_related("org").filter(org_id=message.org_id).first()
    if webhook is None:
        return  # removed since: nothing to deliver
    url, secret = webhook.unseal_destination()
    post_signed(url, message.payload, secret=secret.encode(), event_id=f"outbox-{message.pk}")
