"""What "the identical request" means, and the gate's edges: expiry, a failed mint racing a retry."""

from datetime import timedelta

import pytest
from django.utils import timezone

from broker.minters import MintError, keyward_jwt
from broker.models import IssuedCredential
from keyward.approvals.models import Approval, ApprovalStatus
from keyward.audit.models import AuditEvent
from tests.approvals.conftest import WRITE

pytestmark = pytest.mark.django_db


def approve(callers, approval_id: str) -> None:
    assert callers.client("admin").post(f"/v1/approvals/{approval_id}/approve").status_code == 200


def test_a_different_ttl_shares_the_approval(callers, parked):
    """The lifetime is not part of the identity (the ttl test below says what that must mean)."""
    assert parked.ask({**WRITE, "ttl": "2m"}).json()["approval_id"] == parked.approval_id


def test_scope_order_does_not_matter(callers, parked):
    first = parked.ask({**WRITE, "scope": "refunds:read charges:write"}).json()["approval_id"]
    assert first != parked.approval_id
    assert parked.ask({**WRITE, "scope": "charges:write refunds:read"}).json()["approval_id"] == first


@pytest.mark.parametrize(
    ("variant", "headers"),
    [
        ({**WRITE, "scope": "charges:write refunds:read"}, {}),  # more scopes: a different request
        (WRITE, {"environment": "staging"}),
        (WRITE, {"agent": "other-bot"}),
    ],
)
def test_what_does_not_share_an_approval(callers, parked, variant, headers):
    from tests.broker.conftest import make_agent

    make_agent(callers.org, "other-bot")
    approve(callers, parked.approval_id)
    answer = parked.ask(variant, **headers)
    assert answer.status_code == 202
    assert answer.json()["approval_id"] != parked.approval_id
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.APPROVED


def test_an_approval_for_five_minutes_never_issues_an_hour(callers, parked):
    approve(callers, parked.approval_id)
    issued = parked.ask({**WRITE, "ttl": "1h"})
    assert issued.status_code == 200
    record = IssuedCredential.objects.get(jti=issued.json()["credential_id"])
    approved = Approval.objects.get(pk=parked.approval_id)
    assert record.expires_at - record.issued_at <= timedelta(seconds=approved.ttl_seconds)


def test_the_gate_audits_the_approvals_it_expires(callers, parked):
    Approval.objects.filter(pk=parked.approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    fresh = parked.ask(WRITE).json()["approval_id"]
    assert fresh != parked.approval_id
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.EXPIRED
    expired = AuditEvent.objects.get(event_type="approval.expired")
    assert expired.detail["approval_id"] == parked.approval_id


def test_an_unused_grant_expired_by_the_gate_is_audited(callers, parked):
    approve(callers, parked.approval_id)
    Approval.objects.filter(pk=parked.approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert parked.ask(WRITE).status_code == 202
    assert AuditEvent.objects.filter(event_type="approval.expired").count() == 1


def test_a_failed_mint_while_a_retry_opened_the_next_approval_is_a_502_not_a_500(callers, parked, monkeypatch):
    """The retry lost the race for the grant and opened the next approval; the winner's mint then fails."""
    approve(callers, parked.approval_id)
    retried = []

    def mint_while_a_retry_arrives(request):
        retried.append(parked.ask(WRITE))
        raise MintError("provider down")

    monkeypatch.setattr(keyward_jwt, "mint", mint_while_a_retry_arrives)
    answer = parked.ask(WRITE)
    assert (answer.status_code, answer.json()["error"]) == (502, "native_mint_failed")
    assert retried[0].status_code == 202
    assert AuditEvent.objects.filter(event_type="credential.denied", reason_code="native_mint_failed").count() == 1
    open_approvals = Approval.objects.filter(status__in=[ApprovalStatus.PENDING, ApprovalStatus.APPROVED])
    assert list(open_approvals.values_list("pk", flat=True)) == [retried[0].json()["approval_id"]]
    monkeypatch.undo()
    assert parked.ask(WRITE).json()["approval_id"] == retried[0].json()["approval_id"]
