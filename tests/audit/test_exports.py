"""Background audit exports: POST /v1/audit/exports → worker → status → signed download → expiry."""

import csv
import hashlib
import io
import json
import stat
import time
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core import signing
from django.db import OperationalError
from django.utils import timezone
from rest_framework.test import APIClient

from keyward.audit import exports, services
from keyward.audit.models import AuditEvent, AuditExport, ExportStatus
from keyward.audit.tasks import expire_audit_exports, write_audit_export
from keyward.audit.writer import Actor, record_event
from tests.audit.offline import assert_rows_reverify
from tests.factories import make_audit_events
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

VIEWER_CREATE = {"anonymous": 401, "other_org": 202, "viewer": 202, "admin": 202, "owner": 202}
VIEWER_READ_OWN = {"anonymous": 401, "other_org": 404, "viewer": 200, "admin": 200, "owner": 200}
EVERYONE = dict.fromkeys(VIEWER_CREATE, 200)
NOBODY = dict.fromkeys(VIEWER_CREATE, 403)


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path):
    settings.KEYWARD_EXPORT_DIR = tmp_path / "exports"
    return settings.KEYWARD_EXPORT_DIR


@pytest.fixture
def small_chunks(monkeypatch):
    """Many database fetches and file writes with few rows, and a sync-export cap far below the row count."""
    monkeypatch.setattr(exports, "EXPORT_CHUNK_ROWS", 3)
    monkeypatch.setattr(services, "EXPORT_MAX_ROWS", 10)


@pytest.fixture
def request_export(django_capture_on_commit_callbacks):
    """POST /v1/audit/exports as a client, running the queued task as a real commit would (eager Celery)."""

    def post(client, body=None, *, run: bool = True):
        with django_capture_on_commit_callbacks(execute=run):
            response = client.post("/v1/audit/exports", body or {}, format="json")
        return response

    return post


def status_of(client, export_id: str) -> dict:
    response = client.get(f"/v1/audit/exports/{export_id}")
    assert response.status_code == 200, response.content
    return response.json()


def download_path(body: dict) -> str:
    parts = urlsplit(body["download_url"])
    return f"{parts.path}?{parts.query}"


def signature_of(body: dict) -> str:
    return parse_qs(urlsplit(body["download_url"]).query)["sig"][0]


def fetch(path: str, client: APIClient | None = None):
    return (client or APIClient()).get(path)


def file_bytes(response) -> bytes:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def done_export(client, request_export, body=None) -> dict:
    response = request_export(client, body)
    assert response.status_code == 202, response.content
    status = status_of(client, response.json()["export_id"])
    assert status["status"] == "done", status
    return status


# --- the lifecycle -------------------------------------------------------------------------------


def test_json_export_end_to_end_has_no_row_cap_and_reverifies(callers, request_export, small_chunks):
    make_audit_events(callers.org, 25, agent="bot")
    make_audit_events(callers.other_org.org, 7)
    viewer = callers.client("viewer")

    response = request_export(viewer, {"format": "json"})

    assert response.status_code == 202
    export_id = response.json()["export_id"]
    assert set(response.json()) == {"export_id"}
    assert response["Location"] == f"/v1/audit/exports/{export_id}"
    status = status_of(viewer, export_id)
    assert status["status"] == "done"
    assert (status["format"], status["since"], status["until"], status["rows"]) == ("json", 0, 25, 25)
    assert status["download_url"].startswith(f"http://testserver/v1/audit/exports/{export_id}/download?sig=")
    assert status["finished_at"]
    assert status["expires_at"]
    assert status["download_expires_at"]

    body = file_bytes(fetch(download_path(status)))  # no session: the signature is the authorisation

    assert (len(body), hashlib.sha256(body).hexdigest()) == (status["bytes"], status["sha256"])
    rows = json.loads(body)
    assert [row["seq"] for row in rows] == list(range(1, 26))  # 25 > the sync cap of 10: no cap here
    assert {row["org"] for row in rows} == {callers.org.pk}
    assert_rows_reverify(rows)


def test_every_step_is_audited(callers, request_export):
    make_audit_events(callers.org, 3)
    viewer = callers.client("viewer")
    status = done_export(viewer, request_export, {"format": "csv", "since": 1})
    file_bytes(fetch(download_path(status), APIClient(REMOTE_ADDR="198.51.100.4")))

    rows = {row.event_type: row for row in AuditEvent.objects.filter(org=callers.org, seq__gt=3)}

    requested = rows["audit.export_requested"]
    assert (requested.actor_type, requested.actor_name) == ("account", callers.viewer.email)
    assert requested.detail == {"export_id": status["id"], "format": "csv", "since": 1, "until": 3}
    completed = rows["audit.export_completed"]
    assert (completed.actor_type, completed.outcome) == ("system", "success")
    assert completed.detail == {
        "export_id": status["id"],
        "rows": 2,
        "size_bytes": status["bytes"],
        "sha256": status["sha256"],
    }
    downloaded = rows["audit.export_downloaded"]
    assert (downloaded.actor_type, downloaded.actor_id) == ("anonymous", str(callers.viewer.pk))
    assert (downloaded.ip, downloaded.detail) == ("198.51.100.4", {"export_id": status["id"]})
    assert status_of(viewer, status["id"])["downloads"] == 1


def test_csv_export_is_neutralised_and_respects_the_seq_range(callers, request_export, small_chunks):
    make_audit_events(callers.org, 4)
    payload = '=HYPERLINK("http://evil")'
    record_event(
        org=callers.org,
        event_type="credential.denied",
        outcome="denied",
        end_user=payload,
        agent="-2+3",
        actor=Actor.anonymous("@SUM(A1:A2)"),
    )
    make_audit_events(callers.org, 10)
    viewer = callers.client("viewer")

    status = done_export(viewer, request_export, {"format": "csv", "since": 3, "until": 12})

    response = fetch(download_path(status))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="audit-{callers.org.slug}-3-12.csv"'
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    rows = list(csv.DictReader(io.StringIO(file_bytes(response).decode(), newline="")))
    assert [int(row["seq"]) for row in rows] == list(range(4, 13))
    assert status["rows"] == 9
    poisoned = rows[1]
    assert (poisoned["end_user"], poisoned["agent"], poisoned["actor_name"]) == (
        "'" + payload,
        "'-2+3",
        "'@SUM(A1:A2)",
    )


def test_until_defaults_to_and_is_capped_at_the_last_row_when_requested(callers, request_export):
    make_audit_events(callers.org, 5)
    viewer = callers.client("viewer")

    capped = done_export(viewer, request_export, {"until": 10**6})
    make_audit_events(callers.org, 3)  # written after the request: not part of that export
    beyond = done_export(viewer, request_export, {"since": 10**6})

    assert (capped["since"], capped["until"], capped["rows"]) == (0, 5, 5)
    assert [row["seq"] for row in json.loads(file_bytes(fetch(download_path(capped))))] == [1, 2, 3, 4, 5]
    assert (beyond["since"], beyond["until"], beyond["rows"]) == (10**6, 10**6, 0)
    assert json.loads(file_bytes(fetch(download_path(beyond)))) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"since": -1}, "since"),
        ({"since": "abc"}, "since"),
        ({"since": 2**64}, "since"),
        ({"until": "2024-01-01T00:00:00Z"}, "until"),  # until is a seq, not a time
        ({"until": True}, "until"),
        ({"since": 5, "until": 4}, "until"),
    ],
)
def test_bad_export_requests_are_400s_and_queue_nothing(callers, request_export, body, field):
    response = request_export(callers.client("viewer"), body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]
    assert not AuditExport.objects.exists()


def test_pending_export_has_no_link_and_too_many_in_flight_is_429(callers, request_export):
    viewer = callers.client("viewer")
    ids = [request_export(viewer, run=False).json()["export_id"] for _ in range(exports.MAX_IN_FLIGHT_PER_ORG)]

    refused = request_export(viewer, run=False)
    other = request_export(callers.client("other_org"), run=False)

    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_exports"
    assert refused["Retry-After"] == str(exports.IN_FLIGHT_RETRY_AFTER)
    assert other.status_code == 202  # the limit is per org
    pending = status_of(viewer, ids[0])
    assert (pending["status"], pending["download_url"], pending["download_expires_at"]) == ("pending", None, None)


def test_finished_exports_kept_on_disk_are_capped_per_org(callers, request_export):
    """A viewer cannot fill the disk: finished files count until they expire; failed ones do not."""
    viewer = callers.client("viewer")
    for _ in range(exports.MAX_KEPT_PER_ORG - 1):
        assert request_export(viewer).status_code == 202
    failed = request_export(viewer, run=False).json()["export_id"]
    AuditExport.objects.filter(pk=failed).update(status=ExportStatus.FAILED)
    assert request_export(viewer).status_code == 202  # the failed one left room

    refused = request_export(viewer, run=False)
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_exports"
    assert refused["Retry-After"] == str(exports.KEPT_RETRY_AFTER)
    assert request_export(callers.client("other_org"), run=False).status_code == 202  # per org

    AuditExport.objects.filter(status=ExportStatus.DONE).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert request_export(viewer, run=False).status_code == 202  # expired files no longer count


# --- permissions and org scoping -----------------------------------------------------------------


def test_create_matrix(callers, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        responses = assert_permission_matrix(callers, "POST", "/v1/audit/exports", VIEWER_CREATE, data={})
    mine = AuditExport.objects.get(pk=responses["viewer"].json()["export_id"])
    theirs = AuditExport.objects.get(pk=responses["other_org"].json()["export_id"])
    assert (mine.org, mine.requested_by, mine.status) == (callers.org, callers.viewer.email, ExportStatus.DONE)
    assert theirs.org == callers.other_org.org


def test_status_matrix_another_orgs_export_is_a_404(callers, request_export):
    status = done_export(callers.client("viewer"), request_export)
    responses = assert_permission_matrix(callers, "GET", f"/v1/audit/exports/{status['id']}", VIEWER_READ_OWN)
    assert responses["admin"].json()["id"] == status["id"]
    assert callers.client("viewer").get(f"/v1/audit/exports/exp_{'0' * 32}").status_code == 404
    assert callers.client("viewer").get("/v1/audit/exports/not-an-id").status_code == 404


def test_a_valid_link_works_for_anyone_who_holds_it(callers, request_export):
    make_audit_events(callers.org, 2)
    status = done_export(callers.client("viewer"), request_export)
    responses = assert_permission_matrix(callers, "GET", download_path(status), EVERYONE)
    bodies = {file_bytes(response) for response in responses.values()}
    assert len(bodies) == 1
    assert [row["seq"] for row in json.loads(bodies.pop())] == [1, 2]


def test_a_tampered_link_is_refused_to_everyone(callers, request_export):
    status = done_export(callers.client("viewer"), request_export)
    sig = signature_of(status)
    forged = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    path = f"/v1/audit/exports/{status['id']}/download?{urlencode({'sig': forged})}"

    responses = assert_permission_matrix(callers, "GET", path, NOBODY)

    assert responses["owner"].json()["error"] == "invalid_signature"
    assert AuditEvent.objects.filter(event_type="audit.export_downloaded").count() == 0


def test_a_link_opens_only_its_own_export(callers, request_export):
    mine = done_export(callers.client("viewer"), request_export)
    theirs = done_export(callers.client("other_org"), request_export)
    also_mine = done_export(callers.client("admin"), request_export)

    for victim in (mine, also_mine):
        response = fetch(f"/v1/audit/exports/{victim['id']}/download?{urlencode({'sig': signature_of(theirs)})}")
        assert (response.status_code, response.json()["error"]) == (403, "invalid_signature")
    response = fetch(f"/v1/audit/exports/{also_mine['id']}/download?{urlencode({'sig': signature_of(mine)})}")
    assert response.status_code == 403


def test_a_signature_over_a_changed_payload_is_refused(callers, request_export):
    """Re-signing needs SECRET_KEY; a payload naming another export under the old signature fails."""
    status = done_export(callers.client("viewer"), request_export)
    payload, timestamp, mac = signature_of(status).rsplit(":", 2)
    claims = signing.loads(f"{payload}:{timestamp}:{mac}", salt=exports.LINK_SALT)
    claims["o"] = callers.other_org.org.pk
    other_payload = signing.dumps(claims, salt="x").split(":")[0]
    response = fetch(
        f"/v1/audit/exports/{status['id']}/download?{urlencode({'sig': f'{other_payload}:{timestamp}:{mac}'})}"
    )
    assert (response.status_code, response.json()["error"]) == (403, "invalid_signature")


def test_an_expired_link_is_410_and_a_fresh_status_gives_a_new_one(callers, request_export):
    viewer = callers.client("viewer")
    status = done_export(viewer, request_export)
    with mock.patch("django.core.signing.time.time", return_value=time.time() - exports_link_ttl() - 5):
        old = status_of(viewer, status["id"])

    response = fetch(download_path(old))

    assert (response.status_code, response.json()["error"]) == (410, "link_expired")
    assert fetch(download_path(status_of(viewer, status["id"]))).status_code == 200


def exports_link_ttl() -> int:
    from django.conf import settings

    return settings.KEYWARD_EXPORT_LINK_TTL


@pytest.mark.parametrize("query", ["", "?sig=", "?sig=garbage", "?sig=a:b:c"])
def test_a_missing_or_malformed_signature_is_refused(callers, request_export, query):
    status = done_export(callers.client("viewer"), request_export)
    response = fetch(f"/v1/audit/exports/{status['id']}/download{query}")
    assert response.status_code in (400, 403)
    assert response.json()["error"] in ("invalid_request", "invalid_signature")


def test_the_status_that_carries_a_link_is_never_cached(callers, request_export):
    """The link is a bearer credential for the file: no cache may keep the answer that holds it."""
    viewer = callers.client("viewer")
    status = done_export(viewer, request_export)
    response = viewer.get(f"/v1/audit/exports/{status['id']}")
    assert response.json()["download_url"]
    assert response["Cache-Control"] == "no-store"


def test_the_download_ignores_the_accept_header(callers, request_export):
    status = done_export(callers.client("viewer"), request_export)
    assert APIClient().get(download_path(status), HTTP_ACCEPT="text/csv").status_code == 200


# --- the file ------------------------------------------------------------------------------------


def test_the_file_is_private_and_named_by_the_export_id(callers, request_export, export_dir):
    status = done_export(callers.client("viewer"), request_export, {"format": "csv"})
    files = list(export_dir.iterdir())
    assert [path.name for path in files] == [f"{status['id']}.csv"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(export_dir.stat().st_mode) == 0o700
    assert status["id"].startswith("exp_")
    assert len(status["id"]) == 36


def test_writing_again_is_a_no_op(callers, request_export, export_dir):
    status = done_export(callers.client("viewer"), request_export)
    before = (export_dir / f"{status['id']}.json").read_bytes()

    assert write_audit_export.delay(status["id"]).get() == "done"
    assert exports.write_export(status["id"]) == "done"

    assert (export_dir / f"{status['id']}.json").read_bytes() == before
    assert AuditEvent.objects.filter(event_type="audit.export_completed").count() == 1
    assert AuditExport.objects.get(pk=status["id"]).attempts == 1


def test_a_transient_failure_is_retried(callers, request_export, monkeypatch):
    make_audit_events(callers.org, 4)
    real, calls = exports.stream_json, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(exports, "stream_json", flaky)
    monkeypatch.setattr("keyward.audit.tasks.retry_delay", lambda retries: 0)

    status = done_export(callers.client("viewer"), request_export)

    assert (status["rows"], len(calls)) == (4, 2)
    assert AuditExport.objects.get(pk=status["id"]).attempts == 2


def test_a_lasting_failure_marks_the_export_failed_and_leaves_no_file(callers, request_export, monkeypatch, export_dir):
    make_audit_events(callers.org, 4)

    def broken(*args, **kwargs):
        yield "["
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exports, "stream_json", broken)
    monkeypatch.setattr("keyward.audit.tasks.retry_delay", lambda retries: 0)
    viewer = callers.client("viewer")

    export_id = request_export(viewer).json()["export_id"]

    status = status_of(viewer, export_id)
    assert (status["status"], status["error"], status["download_url"]) == ("failed", "export_failed", None)
    assert AuditExport.objects.get(pk=export_id).attempts == exports.MAX_ATTEMPTS
    assert list(export_dir.iterdir()) == []
    failed = AuditEvent.objects.get(org=callers.org, event_type="audit.export_failed")
    assert (failed.outcome, failed.reason_code, failed.actor_type) == ("failure", "export_failed", "system")
    assert "space" not in json.dumps(failed.detail)  # the code, never the exception's text


def test_an_unexpected_error_fails_at_once(callers, request_export, monkeypatch):
    monkeypatch.setattr(exports, "stream_json", mock.Mock(side_effect=ValueError("boom")))
    export_id = request_export(callers.client("viewer")).json()["export_id"]
    export = AuditExport.objects.get(pk=export_id)
    assert (export.status, export.error, export.attempts) == (ExportStatus.FAILED, "export_failed", 1)


def test_a_claim_lost_with_its_worker_can_be_taken_again_but_a_live_one_cannot(callers, request_export):
    make_audit_events(callers.org, 2)
    export_id = request_export(callers.client("viewer"), run=False).json()["export_id"]
    AuditExport.objects.filter(pk=export_id).update(status=ExportStatus.RUNNING, started_at=timezone.now(), attempts=1)

    assert exports.write_export(export_id) == "running"  # another worker is on it

    AuditExport.objects.filter(pk=export_id).update(started_at=timezone.now() - exports.STALE_CLAIM * 2)
    assert exports.write_export(export_id) == "done"
    assert AuditExport.objects.get(pk=export_id).attempts == 2


def test_an_export_whose_every_attempt_died_fails(callers, request_export):
    export_id = request_export(callers.client("viewer"), run=False).json()["export_id"]
    AuditExport.objects.filter(pk=export_id).update(
        status=ExportStatus.RUNNING,
        started_at=timezone.now() - exports.STALE_CLAIM * 2,
        attempts=exports.MAX_ATTEMPTS,
    )
    assert exports.write_export(export_id) == "failed"
    assert AuditExport.objects.get(pk=export_id).error == "too_many_attempts"


def test_the_sweep_queues_an_export_whose_task_was_lost(callers, request_export):
    make_audit_events(callers.org, 3)
    export_id = request_export(callers.client("viewer"), run=False).json()["export_id"]  # never queued
    assert expire_audit_exports.delay().get() == {"expired": 0, "requeued": 0}  # too recent to call lost

    AuditExport.objects.filter(pk=export_id).update(created_at=timezone.now() - exports.REDISPATCH_AFTER * 2)

    assert expire_audit_exports.delay().get() == {"expired": 0, "requeued": 1}
    assert AuditExport.objects.get(pk=export_id).status == ExportStatus.DONE


# --- expiry --------------------------------------------------------------------------------------


def test_expired_exports_lose_their_file_and_their_link(callers, request_export, export_dir):
    viewer = callers.client("viewer")
    status = done_export(viewer, request_export)
    link = download_path(status)
    pending_id = request_export(viewer, run=False).json()["export_id"]
    AuditExport.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    gone = fetch(link)  # past expiry, before the sweep ran
    assert (gone.status_code, gone.json()["error"]) == (410, "export_expired")

    assert expire_audit_exports.delay().get() == {"expired": 2, "requeued": 0}
    assert expire_audit_exports.delay().get() == {"expired": 0, "requeued": 0}  # idempotent

    assert list(export_dir.iterdir()) == []
    after = status_of(viewer, status["id"])
    assert (after["status"], after["download_url"]) == ("expired", None)
    assert status_of(viewer, pending_id)["status"] == "expired"
    assert fetch(link).status_code == 410
    expired = AuditEvent.objects.filter(org=callers.org, event_type="audit.export_expired")
    assert sorted(row.detail["previous_status"] for row in expired) == ["done", "pending"]


def test_a_file_that_vanished_is_410(callers, request_export, export_dir):
    status = done_export(callers.client("viewer"), request_export)
    (export_dir / f"{status['id']}.json").unlink()
    response = fetch(download_path(status))
    assert (response.status_code, response.json()["error"]) == (410, "export_expired")


def test_exports_expire_after_the_configured_ttl(callers, request_export, settings):
    settings.KEYWARD_EXPORT_TTL = 120
    status = done_export(callers.client("viewer"), request_export)
    export = AuditExport.objects.get(pk=status["id"])
    assert export.expires_at - export.finished_at == timedelta(seconds=120)
    assert expire_audit_exports.delay().get()["expired"] == 0
    assert exports.expire_due(now=export.expires_at) == 1


def test_an_export_that_hits_the_time_limit_fails_as_timed_out(callers, request_export, monkeypatch, export_dir):
    from celery.exceptions import SoftTimeLimitExceeded

    def slow(*args, **kwargs):
        yield "["
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(exports, "stream_json", slow)
    export_id = request_export(callers.client("viewer")).json()["export_id"]
    export = AuditExport.objects.get(pk=export_id)
    assert (export.status, export.error, export.attempts) == (ExportStatus.FAILED, "timed_out", 1)
    assert list(export_dir.iterdir()) == []
