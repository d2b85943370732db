"""Deciding approvals as an attacker would try it: own requests, other orgs, the expiry race, bad input."""

import base64
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from keyward.accounts.models import Role
from keyward.approvals.models import Approval, ApprovalStatus
from keyward.audit.models import AuditEvent
from keyward.idp.dev import issue_dev_user_token
from tests.approvals.conftest import WRITE
from tests.factories import make_account, make_session_token

pytestmark = pytest.mark.django_db


def as_account(account) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(account)}")
    return client


@pytest.mark.parametrize("subject", ["ALICE@Example.COM", " alice@example.com ", "alice@EXAMPLE.com\t"])
def test_self_approval_is_refused_whatever_the_case_or_spacing_of_the_subject(callers, parked, subject):
    alice = make_account(callers.org, Role.OWNER, email="alice@example.com")
    asked = parked.ask(WRITE, token=issue_dev_user_token(callers.org, subject=subject))
    approval_id = asked.json()["approval_id"]
    for verb in ("approve", "deny"):
        response = as_account(alice).post(f"/v1/approvals/{approval_id}/{verb}")
        assert (response.status_code, response.json()["error"]) == (403, "self_approval")
    assert Approval.objects.get(pk=approval_id).status == ApprovalStatus.PENDING


def test_self_approval_is_refused_when_the_idp_subject_is_not_an_email(callers, parked):
    """Okta, Entra ID, Auth0 and Google use opaque subjects; the email claim names the same person."""
    bob = make_account(callers.org, Role.ADMIN, email="bob@example.com")
    token = issue_dev_user_token(callers.org, subject="00u1bobOktaId", email="Bob@Example.com")
    approval_id = parked.ask(WRITE, token=token).json()["approval_id"]
    shown = as_account(bob).get(f"/v1/approvals/{approval_id}").json()
    assert (shown["end_user"], shown["end_user_email"]) == ("00u1bobOktaId", "Bob@Example.com")
    for verb in ("approve", "deny"):
        response = as_account(bob).post(f"/v1/approvals/{approval_id}/{verb}")
        assert (response.status_code, response.json()["error"]) == (403, "self_approval")
    assert Approval.objects.get(pk=approval_id).status == ApprovalStatus.PENDING
    refused = AuditEvent.objects.filter(event_type="approval.decision_refused").order_by("seq")
    assert [(row.outcome, row.reason_code, row.actor_name, row.detail["approval_id"]) for row in refused] == [
        ("denied", "self_approval", "bob@example.com", approval_id)
    ] * 2


def test_a_sub_agent_request_keeps_the_humans_email_for_the_self_approval_check(callers, parked):
    """The delegation chain acts for the same person: their email travels with it."""
    from tests.broker.conftest import make_agent

    bob = make_account(callers.org, Role.ADMIN, email="bob@example.com")
    alice = make_account(callers.org, Role.ADMIN, email="alice@example.com")
    make_agent(callers.org, "helper-bot")
    token = issue_dev_user_token(callers.org, subject="00u1bobOktaId", email="bob@example.com")
    first = parked.ask(WRITE, token=token).json()["approval_id"]
    assert as_account(alice).post(f"/v1/approvals/{first}/approve").status_code == 200
    root = parked.ask(WRITE, token=token)
    assert root.status_code == 200, root.content

    delegation = root.json()["delegation"]["token"]
    delegated = parked.ask(WRITE, agent="helper-bot", token=None, delegation=delegation)
    assert delegated.status_code == 202, delegated.content
    approval = Approval.objects.get(pk=delegated.json()["approval_id"])
    assert (approval.end_user, approval.end_user_email) == ("00u1bobOktaId", "bob@example.com")
    response = as_account(bob).post(f"/v1/approvals/{approval.pk}/approve")
    assert (response.status_code, response.json()["error"]) == (403, "self_approval")


def test_a_superadmin_decides_nothing_in_an_org(callers, parked):
    root = make_account(None, Role.SUPERADMIN, email="root@example.com")
    response = as_account(root).post(f"/v1/approvals/{parked.approval_id}/approve")
    assert (response.status_code, response.json()["error"]) == (403, "no_org")
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.PENDING


def test_another_orgs_admin_gets_404_for_every_verb(callers, parked):
    outsider = callers.client("other_org")
    for method, path in [
        ("get", f"/v1/approvals/{parked.approval_id}"),
        ("post", f"/v1/approvals/{parked.approval_id}/approve"),
        ("post", f"/v1/approvals/{parked.approval_id}/deny"),
    ]:
        response = getattr(outsider, method)(path, {}, format="json")
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.PENDING


def test_an_approval_that_expires_while_being_decided_is_409(callers, parked, monkeypatch):
    """Its deadline passes after the view loaded it and before the decision takes the row lock."""
    Approval.objects.filter(pk=parked.approval_id).update(expires_at=timezone.now() + timedelta(hours=1))
    locked = Approval.objects.select_for_update

    def lock_after_the_deadline():
        Approval.objects.filter(pk=parked.approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
        return locked()

    monkeypatch.setattr(Approval.objects, "select_for_update", lock_after_the_deadline)
    response = callers.client("admin").post(f"/v1/approvals/{parked.approval_id}/approve")
    assert (response.status_code, response.json()["error"]) == (409, "approval_expired")
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.EXPIRED
    assert AuditEvent.objects.filter(event_type="approval.expired").count() == 1
    assert not AuditEvent.objects.filter(event_type="approval.approved").exists()


def test_a_denial_says_when_it_lapses(callers, parked):
    denied = callers.client("admin").post(f"/v1/approvals/{parked.approval_id}/deny").json()
    approval = Approval.objects.get(pk=parked.approval_id)
    assert approval.expires_at == approval.decided_at + timedelta(seconds=callers.org.approval_denial_seconds)
    assert denied["expires_at"] == approval.expires_at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "body",
    [{"reason": "x" * 501}, {"reason": ["a"]}, {"reason": None}, {"reason": {"a": 1}}, [1, 2], "approve"],
)
def test_bad_decision_bodies_are_400_and_decide_nothing(callers, parked, body):
    response = callers.client("admin").post(f"/v1/approvals/{parked.approval_id}/approve", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"error", "message", "request_id", "fields"}
    assert Approval.objects.get(pk=parked.approval_id).status == ApprovalStatus.PENDING


def test_a_long_reason_at_the_limit_is_kept_and_audited_whole(callers, parked):
    reason = "r" * 500
    response = callers.client("admin").post(
        f"/v1/approvals/{parked.approval_id}/deny", {"reason": reason}, format="json"
    )
    assert response.json()["reason"] == reason
    assert AuditEvent.objects.get(event_type="approval.denied").detail["reason"] == reason


@pytest.mark.parametrize(
    "path",
    [
        "/v1/approvals/apr_0000",
        "/v1/approvals/apr_zz",
        "/v1/approvals/APR_00",
        "/v1/approvals/apr_" + "a" * 65,
        "/v1/approvals/apr_%00",
        "/v1/approvals/1",
        "/v1/approvals/apr_0000/approve",
        "/v1/approvals/apr_zz/deny",
    ],
)
def test_malformed_or_unknown_ids_are_404_in_the_error_shape(callers, path):
    client = callers.client("admin")
    response = client.post(path, {}, format="json") if path.endswith(("approve", "deny")) else client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def forged_cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


@pytest.mark.parametrize(
    "query",
    [
        {"status": "weird"},
        {"status": "PENDING"},
        {"cursor": "zz"},
        {"cursor": forged_cursor("p=not-a-time&o=0")},
        {"cursor": forged_cursor("p=2026-13-45 99:00:00+00:00")},
        {"cursor": forged_cursor("p=2026-01-01 00:00:00")},
        {"limit": "abc"},
        {"limit": 0},
        {"limit": 501},
    ],
)
def test_bad_list_parameters_are_400(callers, parked, query):
    response = callers.client("admin").get("/v1/approvals", query)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_the_queue_is_paginated_newest_first(callers, parked):
    for n in range(4):
        parked.ask(WRITE, token=issue_dev_user_token(callers.org, subject=f"user-{n}@example.com"))
    client = callers.client("admin")
    first = client.get("/v1/approvals", {"limit": 3}).json()
    assert set(first) == {"results", "next", "previous", "page_size"}
    assert len(first["results"]) == 3
    rest = client.get(first["next"]).json()
    ids = [row["id"] for row in first["results"] + rest["results"]]
    assert len(ids) == len(set(ids)) == 5
    assert ids[-1] == parked.approval_id  # the oldest comes last
    created = [row["created_at"] for row in first["results"] + rest["results"]]
    assert created == sorted(created, reverse=True)
    pending = client.get("/v1/approvals", {"status": "pending", "limit": 500}).json()["results"]
    assert len(pending) == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("verbs", [("approve", "deny"), ("approve", "approve"), ("deny", "deny")])
def test_concurrent_decisions_one_wins_the_other_is_409(verbs):
    """Two approvers click at the same moment: exactly one decision stands, the other is told so."""
    from tests.broker.conftest import World, allow, make_agent, make_provider
    from tests.permissions import make_callers

    callers = make_callers()
    world = World(callers.org, make_agent(callers.org), make_provider(callers.org), APIClient())
    allow(callers.org, provider="stripe")
    from keyward.policies.models import Effect, Policy

    Policy.objects.create(org=callers.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    approval_id = world.ask(WRITE).json()["approval_id"]
    clients = [callers.client("admin"), callers.client("owner")]
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}

    def decide(client, verb, who):
        try:
            barrier.wait(timeout=20)
            answers[who] = client.post(f"/v1/approvals/{approval_id}/{verb}").status_code
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=decide, args=(client, verb, who))
        for client, verb, who in zip(clients, verbs, ("admin", "owner"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(answers.values()) == [200, 409]
    decided = AuditEvent.objects.filter(event_type__in=["approval.approved", "approval.denied"])
    assert decided.count() == 1
    winner = "admin" if answers["admin"] == 200 else "owner"
    assert Approval.objects.get(pk=approval_id).decided_by == getattr(callers, winner).email
