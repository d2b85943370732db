"""require_approval: 202 while pending, one credential once approved (even under concurrent retries)."""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from broker.models import IssuedCredential
from keyward.approvals.models import Approval, ApprovalStatus
from keyward.policies.models import Effect, Policy
from tests.broker.conftest import last_audit

pytestmark = pytest.mark.django_db

WRITE = {"provider": "stripe", "scope": "charges:write", "ttl": "5m"}


def require_approval(world) -> None:
    Policy.objects.create(org=world.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)


def decide(approval_id: str, status: str) -> None:
    lifetime = timedelta(minutes=15)
    Approval.objects.filter(pk=approval_id).update(
        status=status,
        decided_at=timezone.now(),
        decided_by="approver@example.com",
        expires_at=timezone.now() + lifetime,
    )


def test_approved_request_is_issued_once_then_needs_a_new_approval(world):
    require_approval(world)
    approval_id = world.ask(WRITE).json()["approval_id"]
    decide(approval_id, ApprovalStatus.APPROVED)

    issued = world.ask(WRITE)
    again = world.ask(WRITE)

    assert issued.status_code == 200, issued.content
    approval = Approval.objects.get(pk=approval_id)
    assert approval.status == ApprovalStatus.CONSUMED
    assert approval.credential_jti == issued.json()["credential_id"]
    assert IssuedCredential.objects.get().approval_id == approval_id
    assert again.status_code == 202
    assert again.json()["approval_id"] != approval_id


def test_another_user_does_not_ride_on_an_approval(world):
    require_approval(world)
    approval_id = world.ask(WRITE).json()["approval_id"]
    decide(approval_id, ApprovalStatus.APPROVED)
    other = world.ask(WRITE, token=world.user_token(sub="mallory@example.com"))
    assert other.status_code == 202
    assert other.json()["approval_id"] != approval_id


def test_a_denial_stands_then_lapses(world):
    require_approval(world)
    approval_id = world.ask(WRITE).json()["approval_id"]
    decide(approval_id, ApprovalStatus.DENIED)

    denied = world.ask(WRITE)
    assert denied.status_code == 403
    assert denied.json()["error"] == "approval_denied"
    assert last_audit().reason_code == "approval_denied"

    Approval.objects.filter(pk=approval_id).update(decided_at=timezone.now() - timedelta(minutes=16))
    assert world.ask(WRITE).status_code == 202


def test_an_expired_pending_approval_is_replaced(world):
    require_approval(world)
    approval_id = world.ask(WRITE).json()["approval_id"]
    Approval.objects.filter(pk=approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    fresh = world.ask(WRITE).json()["approval_id"]
    assert fresh != approval_id
    assert Approval.objects.get(pk=approval_id).status == ApprovalStatus.EXPIRED


def test_a_failed_mint_gives_the_approval_back(world, monkeypatch):
    require_approval(world)
    approval_id = world.ask(WRITE).json()["approval_id"]
    decide(approval_id, ApprovalStatus.APPROVED)
    from broker.minters import MintError, keyward_jwt

    monkeypatch.setattr(keyward_jwt, "mint", lambda request: (_ for _ in ()).throw(MintError("down")))
    assert world.ask(WRITE).status_code == 502
    assert Approval.objects.get(pk=approval_id).status == ApprovalStatus.APPROVED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_retries_after_approval_issue_exactly_one_credential():
    from rest_framework.test import APIClient

    from tests.broker.conftest import World, allow, make_agent, make_provider
    from tests.factories import make_org

    org = make_org("Race")
    world = World(org=org, agent=make_agent(org), provider=make_provider(org), client=APIClient())
    allow(org, provider="stripe")
    require_approval(world)
    token = world.user_token()
    approval_id = world.ask(WRITE, token=token).json()["approval_id"]
    decide(approval_id, ApprovalStatus.APPROVED)
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def retry() -> None:
        try:
            barrier.wait(timeout=20)
            client = World(org=org, agent=world.agent, provider=world.provider, client=APIClient())
            statuses.append(client.ask(WRITE, token=token).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=retry) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(statuses) == 50
    assert statuses.count(200) == 1
    assert set(statuses) == {200, 202}
    assert IssuedCredential.objects.filter(org=org).count() == 1
    assert Approval.objects.get(pk=approval_id).status == ApprovalStatus.CONSUMED
    assert Approval.objects.filter(org=org, status=ApprovalStatus.PENDING).count() == 1
