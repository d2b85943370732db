"""manage.py deliver_siem: one sweep in this process, loud when a stream is parked or failing."""

import io
import re

import pytest
from django.core.management import CommandError, call_command

from keyward.audit.models import AuditEvent
from keyward.siem import services
from keyward.siem.models import CursorState, SiemCursor
from tests.factories import make_audit_events, make_org
from tests.siem.conftest import PLATFORM_SECRET, chain_ids

pytestmark = pytest.mark.django_db


def deliver_siem(*args: str) -> str:
    out = io.StringIO()
    call_command("deliver_siem", *args, stdout=out)
    return out.getvalue()


def test_nothing_configured_is_fine(callers):
    assert deliver_siem() == "No SIEM destination is configured.\n"


def test_it_delivers_every_backlog_and_is_idempotent(callers, streaming):
    make_audit_events(callers.org, 150)
    out = deliver_siem()
    line = f"org destination, org {callers.org.slug}: delivered 151 event(s) in 2 batch(es); up to date at seq 151"
    assert line in out
    assert "SIEM: 1 stream(s): 1 up to date." in out
    assert streaming.accepted_ids == chain_ids(callers.org)
    assert deliver_siem() == "SIEM: 1 stream(s): 1 up to date.\n"
    assert len(streaming.received) == 2


def test_it_does_not_wait_out_a_backoff_and_fails_while_the_siem_fails(callers, streaming):
    make_audit_events(callers.org, 1)
    streaming.answer_next(503, 503)
    with pytest.raises(CommandError, match="parked or still failing"):
        deliver_siem()
    assert SiemCursor.objects.get(org=callers.org).state == CursorState.BACKING_OFF
    with pytest.raises(CommandError):
        deliver_siem()  # backing off, but an operator's run tries now
    out = deliver_siem()
    assert "delivered 2 event(s)" in out
    assert streaming.statuses() == [503, 503, 200]


def test_a_parked_stream_fails_the_command_until_retried(callers, streaming):
    make_audit_events(callers.org, 1)
    streaming.answer_next(403)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("deliver_siem", stdout=out)
    assert "PARKED after seq 0 (http_403)" in out.getvalue()
    with pytest.raises(CommandError):
        deliver_siem()
    assert streaming.statuses() == [403]

    out = deliver_siem("--retry-parked")
    assert "un-parked (was http_403)" in out
    assert "up to date" in out
    assert streaming.accepted_ids == chain_ids(callers.org)
    row = AuditEvent.objects.get(org=callers.org, event_type="siem.delivery_retried")
    assert (row.actor_type, row.actor_name) == ("system", "manage.py deliver_siem")


def test_org_narrows_the_sweep(callers, streaming, receivers, settings):
    platform = receivers(PLATFORM_SECRET)
    settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET = platform.url(), PLATFORM_SECRET
    other = make_org()
    make_audit_events(other, 2)
    out = deliver_siem("--org", callers.org.slug)
    assert "SIEM: 2 stream(s): 2 up to date." in out
    assert {event_id.rsplit(":", 1)[0] for event_id in platform.accepted_ids} == {f"org:{callers.org.pk}"}
    assert services.siem_delivered_through(other) == 0
    with pytest.raises(CommandError, match="No org"):
        deliver_siem("--org", "no-such-org")


def test_a_backing_off_stream_says_when_it_is_tried_next_with_date_and_zone(callers, streaming):
    make_audit_events(callers.org, 1)
    streaming.answer_next(503)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("deliver_siem", stdout=out)
    assert re.search(
        r"FAILING after seq 0 \(http_503\), next try \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\n", out.getvalue()
    )


def test_un_parking_the_platform_stream_is_a_platform_audit_row(callers, receivers, settings):
    platform = receivers(PLATFORM_SECRET)
    settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET = platform.url(), PLATFORM_SECRET
    make_audit_events(callers.org, 1)
    platform.answer_next(401)
    with pytest.raises(CommandError):
        deliver_siem("--org", callers.org.slug)

    out = deliver_siem("--org", callers.org.slug, "--retry-parked")
    assert "un-parked (was http_401)" in out
    row = AuditEvent.objects.get(org=None, event_type="siem.delivery_retried")
    assert (row.actor_type, row.actor_name) == ("system", "manage.py deliver_siem")
    assert (row.detail["destination"], row.detail["chain"], row.detail["error"]) == (
        "platform",
        f"org:{callers.org.pk}",
        "http_401",
    )
    assert not services.retry_platform_delivery(f"org:{callers.org.pk}", actor=None)  # not waiting: no row
    assert AuditEvent.objects.filter(event_type="siem.delivery_retried", org=None).count() == 1
