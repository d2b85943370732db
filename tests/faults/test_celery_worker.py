"""The Celery worker, as deployed, outlives Redis dying under it and delivers again by itself.

Each round kills the private redis-server while the worker holds an unacknowledged task (a SIEM
delivery whose POST the receiver holds open; tasks are acks_late), which is the moment that made
celery 5.7 + kombu 5.7 exit with `Unrecoverable error: AttributeError("'NoneType' object has no
attribute 'hostname'")` (see keyward/core/celery_redis.py), then starts Redis again.
"""

import pytest

from keyward.core import queueing
from keyward.siem.models import SiemCursor
from keyward.tenancy.models import Org
from tests.factories import make_audit_events
from tests.processes import PrivateRedis, Worker, act_as_beat, forget_broker_connections, wait_until
from tests.siem.conftest import SECRET, caught_up, chain_ids, streamed_org
from tests.siem.receiver import SiemReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROUNDS = 3
TIMEOUT = 30.0


def kill_redis_with_a_task_in_flight(worker: Worker, broker: PrivateRedis, siem: SiemReceiver, org: Org) -> None:
    """Kill Redis while the worker's child is mid-POST (its task unacknowledged), then bring it back."""
    seen = len(siem.received)
    release = siem.hold_next()
    make_audit_events(org, 1)
    siem.wait_for(lambda: len(siem.received) > seen, TIMEOUT, "the held delivery")
    log_before = len(worker.log.read_bytes())

    broker.stop()  # the worker's consumer is blocked in BRPOP
    wait_until(
        lambda: not worker.alive or b"Cannot connect to" in worker.log.read_bytes()[log_before:],
        TIMEOUT,
        "the worker to notice the lost broker",
    )
    release.set()
    broker.start()
    forget_broker_connections()  # this process's own pooled connections died with Redis,
    queueing.resume()  # and it paused queueing when its publish failed: the worker is under test here
    wait_until(lambda: not worker.alive or worker.answers_ping(), TIMEOUT, "the worker to reconnect", every=0.5)


def test_the_worker_survives_redis_dying_with_a_task_in_flight_and_delivers_after(workers, broker, receivers):
    siem = receivers(SECRET)
    worker = workers(as_deployed=True)
    org, _owner = streamed_org(siem)
    siem.wait_for(caught_up(siem, org), TIMEOUT, "the stream before the first outage")

    for _ in range(ROUNDS):
        kill_redis_with_a_task_in_flight(worker, broker, siem, org)
        assert worker.alive, worker.log_tail()
        assert b"Unrecoverable error" not in worker.log.read_bytes()

    make_audit_events(org, 2)
    act_as_beat()  # the wake-ups of rows written while Redis was down were left to the sweep
    siem.wait_for(caught_up(siem, org), TIMEOUT, "every event after the outages")
    assert siem.accepted_ids == chain_ids(org)
    wait_until(
        lambda: SiemCursor.objects.get(org=org).last_seq == len(chain_ids(org)), TIMEOUT, "the cursor to catch up"
    )
    assert worker.alive
