"""GET/PATCH /v1/org: the caller's own org settings (owner), validated and audited."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from keyward.accounts.models import Role
from keyward.audit.models import AuditEvent
from keyward.audit.tasks import prune_audit_retention
from keyward.tenancy.models import Org
from tests.factories import make_account, make_audit_events, make_session_token
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

OWNER_ONLY = {"anonymous": 401, "other_org": 200, "viewer": 403, "admin": 403, "owner": 200}
SETTINGS = {"audit_retention_days", "approval_pending_seconds", "approval_grant_seconds", "approval_denial_seconds"}


def changes_of(org) -> list[dict]:
    return [
        row.detail["changes"]
        for row in AuditEvent.objects.filter(org=org, event_type="org.settings_changed").order_by("seq")
    ]


def test_get_matrix_shows_the_callers_own_org(callers):
    responses = assert_permission_matrix(callers, "GET", "/v1/org", OWNER_ONLY)

    body = responses["owner"].json()
    assert body["id"] == callers.org.pk
    assert body["slug"] == callers.org.slug
    assert set(body) >= SETTINGS | {"name", "plan", "max_delegation_depth", "max_ttl_seconds", "created_at"}
    assert (body["audit_retention_days"], body["approval_pending_seconds"]) == (365, 3600)
    assert (body["approval_grant_seconds"], body["approval_denial_seconds"]) == (900, 900)
    assert responses["other_org"].json()["id"] == callers.other_org.org.pk


def test_patch_matrix_changes_only_the_callers_org_and_is_audited(callers):
    responses = assert_permission_matrix(
        callers, "PATCH", "/v1/org", OWNER_ONLY, data={"audit_retention_days": 90, "approval_grant_seconds": 300}
    )

    assert responses["owner"].json()["audit_retention_days"] == 90
    ours, theirs = Org.objects.get(pk=callers.org.pk), Org.objects.get(pk=callers.other_org.org.pk)
    assert (ours.audit_retention_days, ours.approval_grant_seconds) == (90, 300)
    assert (theirs.audit_retention_days, theirs.approval_grant_seconds) == (90, 300)  # its own owner did it
    assert changes_of(callers.org) == [
        {"audit_retention_days": {"old": 365, "new": 90}, "approval_grant_seconds": {"old": 900, "new": 300}}
    ]
    row = AuditEvent.objects.get(org=callers.org, event_type="org.settings_changed")
    assert (row.actor_type, row.actor_name) == ("account", callers.owner.email)
    assert row.request_id == responses["owner"]["X-Request-Id"]


def test_retention_can_be_switched_off_and_back_on(callers):
    owner = callers.client("owner")
    assert owner.patch("/v1/org", {"audit_retention_days": None}, format="json").json()["audit_retention_days"] is None
    assert Org.objects.get(pk=callers.org.pk).audit_retention_days is None
    assert owner.patch("/v1/org", {"audit_retention_days": 30}, format="json").status_code == 200
    assert changes_of(callers.org) == [
        {"audit_retention_days": {"old": 365, "new": None}},
        {"audit_retention_days": {"old": None, "new": 30}},
    ]


def test_repeating_a_patch_writes_no_second_row(callers):
    owner = callers.client("owner")
    for _ in range(2):
        response = owner.patch("/v1/org", {"approval_pending_seconds": 600}, format="json")
        assert response.status_code == 200
    assert owner.patch("/v1/org", {"approval_pending_seconds": 600}, format="json").status_code == 200
    assert len(changes_of(callers.org)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"audit_retention_days": 0}, "audit_retention_days"),
        ({"audit_retention_days": 29}, "audit_retention_days"),  # under the operator's floor
        ({"audit_retention_days": 36501}, "audit_retention_days"),
        ({"audit_retention_days": "forever"}, "audit_retention_days"),
        ({"audit_retention_days": 1.5}, "audit_retention_days"),
        ({"approval_pending_seconds": 59}, "approval_pending_seconds"),
        ({"approval_pending_seconds": 7 * 86400 + 1}, "approval_pending_seconds"),
        ({"approval_pending_seconds": None}, "approval_pending_seconds"),
        ({"approval_grant_seconds": 86401}, "approval_grant_seconds"),
        ({"approval_grant_seconds": True}, "approval_grant_seconds"),
        ({"approval_denial_seconds": 0}, "approval_denial_seconds"),
        ({"approval_denial_seconds": -60}, "approval_denial_seconds"),
        ({"name": "Renamed"}, "name"),
        ({"plan": "enterprise"}, "plan"),
        ({"max_ttl_seconds": 86400, "audit_retention_days": 30}, "max_ttl_seconds"),
        ({"slug": "taken"}, "slug"),
        ({}, "non_field_errors"),
    ],
)
def test_bad_patches_are_400s_and_change_nothing(callers, body, field):
    response = callers.client("owner").patch("/v1/org", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]
    org = Org.objects.get(pk=callers.org.pk)
    assert (org.name, org.plan, org.audit_retention_days, org.approval_pending_seconds) == (
        callers.org.name,
        callers.org.plan,
        365,
        3600,
    )
    assert changes_of(callers.org) == []


def test_a_body_that_is_not_an_object_is_a_400(callers):
    response = callers.client("owner").patch("/v1/org", [1, 2], format="json")
    assert response.status_code == 400


def test_the_edges_of_each_range_are_accepted(callers):
    body = {
        "audit_retention_days": 30,  # the operator's floor (KEYWARD_AUDIT_MIN_RETENTION_DAYS)
        "approval_pending_seconds": 7 * 86400,
        "approval_grant_seconds": 60,
        "approval_denial_seconds": 60,
    }
    response = callers.client("owner").patch("/v1/org", body, format="json")
    assert response.status_code == 200
    assert {name: response.json()[name] for name in body} == body


def test_a_superadmin_has_no_org_here():
    superadmin = make_account(None, Role.SUPERADMIN)
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(superadmin)}")
    assert client.get("/v1/org").json()["error"] == "no_org"
    assert client.patch("/v1/org", {"audit_retention_days": 45}, format="json").status_code == 403


def test_other_methods_are_refused(callers):
    owner = callers.client("owner")
    assert owner.put("/v1/org", {"audit_retention_days": 5}, format="json").status_code == 405
    assert owner.delete("/v1/org").status_code == 405


def test_a_retention_set_here_is_what_the_daily_prune_applies(callers):
    with mock.patch("keyward.audit.writer.timezone.now", return_value=timezone.now() - timedelta(days=50)):
        make_audit_events(callers.org, 4)
    make_audit_events(callers.org, 1)
    assert prune_audit_retention.delay().get()["deleted"] == 0  # the default keeps a year

    callers.client("owner").patch("/v1/org", {"audit_retention_days": 40}, format="json")

    assert prune_audit_retention.delay().get()["deleted"] == 4
    assert AuditEvent.objects.filter(org=callers.org, seq__lte=4).count() == 0
