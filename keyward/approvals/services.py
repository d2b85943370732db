"""Parking a credential request for a human, and consuming the decision exactly once.

The broker calls `gate` when policy says require_approval. The identical request (same org,
agent, end user, provider, scopes, environment and delegation parent) maps to one open approval.
"""

import contextlib
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from keyward.agents.models import Agent
from keyward.approvals.decisions import expire_due
from keyward.approvals.models import Approval, ApprovalStatus
from keyward.approvals.notifications import notify_new_approval
from keyward.tenancy.models import Org


@dataclass(frozen=True)
class ApprovalRequest:
    org: Org
    agent: Agent
    end_user: str
    provider: str
    scopes: list[str]
    environment: str
    ttl_seconds: int
    chain: list[str]
    parent_jti: str
    policy_id: int | None
    end_user_email: str = ""  # not part of the identity (`sub` is); used to spot self-approval

    @property
    def key(self) -> str:
        identity = [
            self.org.pk,
            self.agent.pk,
            self.end_user,
            self.provider,
            sorted(self.scopes),
            self.environment,
            self.parent_jti,
        ]
        return hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Gate:
    """`approval` granted this request (issue now), or `pending` (answer 202), or `denied` (403)."""

    approval: Approval
    state: str


def gate(request: ApprovalRequest) -> Gate:
    """Consume an approved decision, report a standing denial, or find/open the pending approval."""
    now = timezone.now()
    expire_due(request.org, request_key=request.key, now=now)
    approved = Approval.objects.filter(org=request.org, request_key=request.key, status=ApprovalStatus.APPROVED).first()
    if approved is not None and _consume(approved, now):
        approved.refresh_from_db()
        return Gate(approved, "granted")
    denied = (
        Approval.objects.filter(
            org=request.org,
            request_key=request.key,
            status=ApprovalStatus.DENIED,
            decided_at__gt=now - timedelta(seconds=request.org.approval_denial_seconds),
        )
        .order_by("-decided_at")
        .first()
    )
    if denied is not None:
        return Gate(denied, "denied")
    return Gate(_open_pending(request, now), "pending")


def release(approval: Approval) -> None:
    """Undo a consumption whose credential could not be issued, so the grant is not lost.

    If an identical retry lost the race for the grant and opened the next approval meanwhile, that
    one stands (its approvers were told) and this stays consumed, with no credential.
    """
    with contextlib.suppress(IntegrityError), transaction.atomic():
        Approval.objects.filter(pk=approval.pk, status=ApprovalStatus.CONSUMED, credential_jti="").update(
            status=ApprovalStatus.APPROVED, consumed_at=None
        )


def _consume(approval: Approval, now) -> bool:
    """Exactly one concurrent caller wins: a conditional UPDATE from approved to consumed."""
    return bool(
        Approval.objects.filter(pk=approval.pk, status=ApprovalStatus.APPROVED, expires_at__gt=now).update(
            status=ApprovalStatus.CONSUMED, consumed_at=now
        )
    )


def _open_pending(request: ApprovalRequest, now) -> Approval:
    existing = Approval.objects.filter(org=request.org, request_key=request.key, status=ApprovalStatus.PENDING).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            approval = Approval.objects.create(
                id=f"apr_{secrets.token_hex(12)}",
                org=request.org,
                agent=request.agent,
                end_user=request.end_user,
                end_user_email=request.end_user_email,
                provider=request.provider,
                scope=" ".join(request.scopes),
                environment=request.environment,
                ttl_seconds=request.ttl_seconds,
                delegation_chain=request.chain,
                parent_jti=request.parent_jti,
                request_key=request.key,
                policy_id=request.policy_id,
                expires_at=now + timedelta(seconds=request.org.approval_pending_seconds),
            )
            notify_new_approval(approval)
            return approval
    except IntegrityError:
        # A concurrent identical request opened it first (one open approval per request key).
        return Approval.objects.get(
            org=request.org, request_key=request.key, status__in=[ApprovalStatus.PENDING, ApprovalStatus.APPROVED]
        )
