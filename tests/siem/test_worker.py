"""A real Celery worker process, a real (private) Redis and PostgreSQL: the background half end to end.

Each test starts `celery -A keyward worker` against the test database and a redis-server of its
own on a free port (never the machine's shared Redis, which these tests stop and start). The test
process issues credentials through the broker API with Celery no longer eager, so everything that
reaches the 127.0.0.1 receivers went through Redis and the worker. Where beat would run the sweeps
every few seconds, the test queues them itself (`act_as_beat`).
"""

import glob
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from keyward.approvals import decisions
from keyward.audit.models import AuditChain
from keyward.outbox.models import MessageStatus, OutboxMessage
from keyward.policies.models import Effect, Policy
from keyward.siem.models import SiemCursor
from keyward.tenancy.models import Org
from tests.broker.conftest import World, _fresh_key_caches, allow, make_agent, make_provider  # noqa: F401
from tests.factories import make_audit_events
from tests.processes import act_as_beat, wait_until
from tests.siem.conftest import PLATFORM_SECRET, SECRET, caught_up, chain_ids, streamed_org
from tests.siem.receiver import signature_is_valid

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

DELIVERY_TIMEOUT = 60.0
HOOK_SECRET = "approval-hook-secret-0123456789"
READ = {"provider": "stripe", "scope": "charges:read", "ttl": "5m"}
WRITE = {"provider": "stripe", "scope": "charges:write", "ttl": "5m"}


def approval_world(org: Org) -> World:
    """Reads are allowed; writes wait for a human (whose notification the worker sends)."""
    world = World(org=org, agent=make_agent(org), provider=make_provider(org), client=APIClient())
    allow(org, provider="stripe")
    Policy.objects.create(org=org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    return world


def test_a_real_worker_sends_the_approval_notice_and_streams_the_audit_log(
    workers, receivers, local_server, mail_dir, settings
):
    siem, platform = receivers(SECRET), receivers(PLATFORM_SECRET)
    settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET = platform.url(), PLATFORM_SECRET
    hook = local_server()
    hook.respond("/hook", status=204)
    workers()
    org, _owner = streamed_org(siem)
    decisions.set_webhook(org, url=hook.url("/hook"), secret=HOOK_SECRET)
    world = approval_world(org)

    answer = world.ask(WRITE)
    assert answer.status_code == 202, answer.content
    approval_id = answer.json()["approval_id"]

    wait_until(lambda: hook.count("/hook") == 1, DELIVERY_TIMEOUT, "the approval webhook")
    _method, _path, headers = hook.requests[0]
    assert signature_is_valid(headers, hook.bodies[0], HOOK_SECRET.encode())
    assert approval_id.encode() in hook.bodies[0]
    wait_until(lambda: glob.glob(str(mail_dir / "*.log")), DELIVERY_TIMEOUT, "the approval email")
    mail = "".join(Path(name).read_text() for name in glob.glob(str(mail_dir / "*.log")))
    assert "Subject: [keyward] Approval needed: invoice-bot wants stripe charges:write" in mail
    assert f"/approvals/{approval_id}" in mail

    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the org's SIEM stream")
    platform.wait_for(
        lambda: [i for i in platform.accepted_ids if i.startswith(f"org:{org.pk}:")] == chain_ids(org),
        DELIVERY_TIMEOUT,
        "the platform SIEM stream",
    )
    assert siem.accepted_ids == chain_ids(org)
    assert all(item.signature_ok for item in siem.received + platform.received)
    events = [event["event_type"] for item in siem.received for event in item.events]
    assert "credential.pending_approval" in events
    delivered = OutboxMessage.objects.filter(org=org, status=MessageStatus.DELIVERED)
    wait_until(lambda: delivered.count() == 2, DELIVERY_TIMEOUT, "the outbox rows to be marked delivered")


def test_issuance_succeeds_while_redis_is_down_and_everything_drains_after(
    workers, broker, receivers, local_server, mail_dir
):
    siem = receivers(SECRET)
    hook = local_server()
    hook.respond("/hook", status=204)
    workers()
    org, _owner = streamed_org(siem)
    decisions.set_webhook(org, url=hook.url("/hook"), secret=HOOK_SECRET)
    world = approval_world(org)
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the stream before the outage")
    head = AuditChain.objects.get(key=f"org:{org.pk}").last_seq
    wait_until(lambda: SiemCursor.objects.get(org=org).last_seq == head, DELIVERY_TIMEOUT, "the worker to be idle")

    broker.stop()
    answers = [world.ask(READ) for _ in range(3)] + [world.ask(WRITE)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 202]
    assert all(answer.json().get("credential") for answer in answers[:3])
    pending = OutboxMessage.objects.filter(org=org, status=MessageStatus.PENDING)
    assert pending.count() == 2  # the approval email and webhook wait in PostgreSQL
    head = AuditChain.objects.get(key=f"org:{org.pk}").last_seq
    assert SiemCursor.objects.get(org=org).last_seq < head  # and so do the audit rows

    broker.start()
    act_as_beat()
    wait_until(lambda: not pending.exists(), DELIVERY_TIMEOUT, "the outbox to drain after Redis returned")
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the SIEM stream to drain after Redis returned")
    assert siem.accepted_ids == chain_ids(org)
    assert hook.count("/hook") == 1
    assert glob.glob(str(mail_dir / "*.log"))


def test_a_worker_killed_mid_delivery_is_replaced_and_the_receiver_drops_the_repeat(workers, receivers):
    siem = receivers(SECRET)
    first = workers()
    org, _owner = streamed_org(siem)
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the first delivery")

    release = siem.hold_next()
    make_audit_events(org, 3)
    siem.wait_for(lambda: len(siem.received) == 2, DELIVERY_TIMEOUT, "the held delivery")
    held = siem.received[1]
    first.kill()  # mid-POST: the receiver has the events, the worker never hears back
    release.set()
    assert SiemCursor.objects.get(org=org).last_seq == 1  # its transaction died with its connection

    workers()
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    expected = chain_ids(org)
    while siem.accepted_ids != expected and time.monotonic() < deadline:
        act_as_beat()
        time.sleep(1)
    assert siem.accepted_ids == expected
    resent = [item for item in siem.received[2:] if set(held.ids) <= set(item.ids)]
    assert resent, siem.summary()
    assert siem.duplicates >= len(held.ids)


def test_a_siem_answering_500_for_a_while_gets_every_event_in_order(workers, receivers):
    siem = receivers(SECRET)
    workers()
    org, _owner = streamed_org(siem)
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the stream before the outage")

    siem.answer_next(500, 500, 500)
    make_audit_events(org, 2)
    siem.wait_for(lambda: len(siem.received) >= 2, DELIVERY_TIMEOUT, "the first refused batch")
    make_audit_events(org, 2)  # more events while the SIEM is down
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "recovery after the 500s")
    assert siem.statuses()[:5] == [200, 500, 500, 500, 200]
    assert siem.accepted_ids == chain_ids(org)
    assert siem.duplicates == 0
