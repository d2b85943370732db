"""/v1/siem: who may see and change the org's stream, and that its URL and secret never come back out."""

import json
import logging

import pytest

from keyward.audit.models import AuditEvent
from keyward.siem import delivery
from keyward.siem.models import CursorState, DestinationKind, OrgSiemDestination, SiemCursor
from tests.factories import make_audit_events
from tests.permissions import assert_permission_matrix
from tests.siem.conftest import SECRET, chain_ids, make_due

pytestmark = pytest.mark.django_db

OWNER_ONLY = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 403, "owner": 204}


def test_show_matrix(callers, streaming):
    responses = assert_permission_matrix(
        callers, "GET", "/v1/siem", {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}
    )
    body = responses["admin"].json()
    assert body["host"] == "127.0.0.1"
    assert (body["state"], body["delivered_through"], body["head"], body["pending_events"]) == ("ok", 0, 1, 1)
    assert responses["other_org"].json()["error"] == "no_siem_destination"


def test_configure_matrix_owner_only(callers, siem):
    responses = assert_permission_matrix(
        callers,
        "PUT",
        "/v1/siem",
        {"anonymous": 401, "other_org": 200, "viewer": 403, "admin": 403, "owner": 200},
        data={"url": siem.url(), "secret": SECRET},
    )
    assert responses["owner"].json()["host"] == "127.0.0.1"
    other_org = callers.other_org.org
    assert OrgSiemDestination.objects.filter(org__in=[callers.org, other_org]).count() == 2
    row = AuditEvent.objects.get(org=callers.org, event_type="siem.destination_set")
    assert (row.actor_name, row.detail) == (callers.owner.email, {"host": "127.0.0.1", "created": True})


def test_remove_matrix_owner_only(callers, streaming):
    assert_permission_matrix(callers, "DELETE", "/v1/siem", OWNER_ONLY)
    assert not OrgSiemDestination.objects.filter(org=callers.org).exists()
    assert not SiemCursor.objects.filter(org=callers.org).exists()
    row = AuditEvent.objects.get(org=callers.org, event_type="siem.destination_removed")
    assert (row.actor_name, row.detail) == (callers.owner.email, {"host": "127.0.0.1"})
    assert callers.client("owner").delete("/v1/siem").status_code == 404


def test_retry_matrix(callers, streaming):
    SiemCursor.objects.filter(org=callers.org).update(state=CursorState.PARKED, last_error="http_410")
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/siem/retry",
        {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 409},
    )
    assert responses["admin"].json()["state"] == "ok"
    assert responses["owner"].json()["error"] == "siem_delivery_ok"


def test_bad_input_is_refused(callers, siem):
    owner = callers.client("owner")
    short = owner.put("/v1/siem", {"url": siem.url(), "secret": "x" * 31}, format="json")
    assert (short.status_code, list(short.json()["fields"])) == (400, ["secret"])
    metadata = owner.put(
        "/v1/siem", {"url": "http://169.254.169.254/latest/meta-data", "secret": SECRET}, format="json"
    )
    assert (metadata.status_code, metadata.json()["error"]) == (400, "url_destination_not_allowed")
    assert owner.put("/v1/siem", {"url": "ftp://siem.example.com/in", "secret": SECRET}, format="json").json()[
        "error"
    ] == ("url_scheme_not_allowed")
    assert not OrgSiemDestination.objects.exists()


def test_the_url_and_secret_are_sealed_and_never_shown(callers, receivers, loopback_only, caplog):
    siem = receivers()
    url = siem.url("/ingest/c0ffee-path?token=url-embedded-token-123")
    with caplog.at_level(logging.DEBUG, logger="keyward"):  # keyward's lines (urllib3 prints URLs at DEBUG)
        put = callers.client("owner").put("/v1/siem", {"url": url, "secret": SECRET}, format="json")
        make_audit_events(callers.org, 1)
        siem.answer_next(500)
        delivery.deliver(DestinationKind.ORG, callers.org.pk)
        make_due()
        delivery.deliver(DestinationKind.ORG, callers.org.pk)
        shown = callers.client("admin").get("/v1/siem")
    assert put.status_code == 200
    assert siem.accepted_ids == chain_ids(callers.org)  # the sealed URL, path and query included, still works
    row = OrgSiemDestination.objects.get(org=callers.org)
    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    for secret in (SECRET, "url-embedded-token-123", "c0ffee-path"):
        assert secret not in put.content.decode()
        assert secret not in shown.content.decode()
        assert secret.encode() not in bytes(row.ciphertext)
        assert secret not in row.host
        assert secret not in audit
        assert secret not in caplog.text
        assert all(secret.encode() not in item.body for item in siem.received)
    assert shown.json()["host"] == "127.0.0.1"
    assert "secret" not in shown.json()


def test_changing_the_destination_keeps_the_position_and_clears_a_park(callers, streaming, receivers):
    make_audit_events(callers.org, 2)
    delivery.deliver(DestinationKind.ORG, callers.org.pk)
    SiemCursor.objects.filter(org=callers.org).update(state=CursorState.PARKED, last_error="http_401")
    moved = receivers()
    response = callers.client("owner").put("/v1/siem", {"url": moved.url(), "secret": SECRET}, format="json")
    assert (response.json()["state"], response.json()["delivered_through"]) == ("ok", 3)
    delivery.deliver(DestinationKind.ORG, callers.org.pk)
    assert moved.accepted_ids == chain_ids(callers.org)[3:]  # from where delivery stood: the change itself
    assert AuditEvent.objects.get(org=callers.org, seq=4).event_type == "siem.destination_set"


def test_removing_then_setting_again_starts_from_the_oldest_retained_row(callers, streaming, receivers):
    make_audit_events(callers.org, 2)
    delivery.deliver(DestinationKind.ORG, callers.org.pk)
    assert callers.client("owner").delete("/v1/siem").status_code == 204
    again = receivers()
    callers.client("owner").put("/v1/siem", {"url": again.url(), "secret": SECRET}, format="json")
    delivery.deliver(DestinationKind.ORG, callers.org.pk)
    assert again.accepted_ids == chain_ids(callers.org)
    assert again.accepted_ids[0] == f"org:{callers.org.pk}:1"
