from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from keyward.approvals.decisions import expire_due
from keyward.approvals.models import Approval, ApprovalStatus
from keyward.audit.models import AuditEvent
from keyward.outbox.models import MessageStatus, OutboxMessage
from tests.approvals.conftest import WRITE
from tests.factories import make_account
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

ADMIN = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}


def test_list_and_retrieve_matrix(callers, parked):
    listed = assert_permission_matrix(callers, "GET", "/v1/approvals", {**ADMIN, "other_org": 200})
    assert [row["id"] for row in listed["admin"].json()["results"]] == [parked.approval_id]
    assert listed["other_org"].json()["results"] == []
    one = assert_permission_matrix(callers, "GET", f"/v1/approvals/{parked.approval_id}", ADMIN)
    body = one["admin"].json()
    assert (body["status"], body["agent"], body["end_user"], body["scope"]) == (
        "pending",
        "invoice-bot",
        "alice@example.com",
        "charges:write",
    )
    client = callers.client("admin")
    assert client.get("/v1/approvals", {"status": "approved"}).json()["results"] == []
    assert client.get("/v1/approvals", {"status": "weird"}).status_code == 400


def test_approve_matrix_then_the_agent_gets_its_credential(callers, parked):
    responses = assert_permission_matrix(
        callers,
        "POST",
        f"/v1/approvals/{parked.approval_id}/approve",
        {**ADMIN, "owner": 409},
        data={"reason": "ticket OPS-1"},
    )
    assert responses["admin"].json()["status"] == "approved"
    assert responses["owner"].json()["error"] == "approval_already_decided"
    event = AuditEvent.objects.get(event_type="approval.approved")
    assert (event.actor_name, event.detail["reason"]) == (callers.admin.email, "ticket OPS-1")

    issued = parked.ask(WRITE)
    assert issued.status_code == 200
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.CONSUMED


def test_deny_then_the_agent_is_refused(callers, parked):
    response = callers.client("admin").post(f"/v1/approvals/{parked.approval_id}/deny", {}, format="json")
    assert response.json()["status"] == "denied"
    assert parked.ask(WRITE).json()["error"] == "approval_denied"
    assert callers.client("owner").post(f"/v1/approvals/{parked.approval_id}/approve").status_code == 409


def test_an_approver_cannot_approve_their_own_request(callers, parked):
    alice = make_account(callers.org, "admin", email="alice@example.com")
    from tests.factories import make_session_token

    response = parked.client.post(
        f"/v1/approvals/{parked.approval_id}/approve", HTTP_AUTHORIZATION=f"Bearer {make_session_token(alice)}"
    )
    assert response.status_code == 403
    assert response.json()["error"] == "self_approval"
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.PENDING


def test_deciding_an_expired_approval_is_409(callers, parked):
    Approval.objects.filter(pk=parked.approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = callers.client("admin").post(f"/v1/approvals/{parked.approval_id}/approve")
    assert response.status_code == 409
    assert response.json()["error"] == "approval_expired"
    assert AuditEvent.objects.filter(event_type="approval.expired").count() == 1


def test_expiry_covers_pending_and_unused_approvals(callers, parked):
    callers.client("admin").post(f"/v1/approvals/{parked.approval_id}/approve")
    later = timezone.now() + timedelta(seconds=callers.org.approval_grant_seconds + 1)
    assert expire_due(now=later) == 1
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.EXPIRED
    assert expire_due(now=later) == 0


def test_a_new_approval_emails_the_approvers_through_the_outbox(callers, parked):
    message = OutboxMessage.objects.get(kind="approval_email")
    assert message.status == MessageStatus.DELIVERED
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert set(sent.to) == {callers.admin.email, callers.owner.email}
    assert "invoice-bot" in sent.subject
    assert parked.approval_id in sent.body


def test_repeated_requests_do_not_notify_twice(callers, parked):
    parked.ask(WRITE)
    parked.ask(WRITE)
    assert OutboxMessage.objects.filter(kind="approval_email").count() == 1
