"""Redis stopped and started again while clients issue credentials and administer the org.

What must hold: no answer is a 500 (or no answer at all); issuance and the admin API keep working
without Redis; the rate-limited lookup says `503 cache_unavailable` while Redis is away and works
again once it is back; every credential a client got has its record and audit row; the worker comes
back by itself and the SIEM gets every event of the org's chain (nothing lost).
"""

import pytest

from tests.faults.conftest import Tenant, assert_every_credential_was_recorded, unexpected
from tests.faults.traffic import Traffic
from tests.processes import forget_broker_connections, wait_until
from tests.siem.conftest import SECRET, chain_ids

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

TIMEOUT = 40.0
ALLOWED = {
    "issue": {(200, "")},
    "admin_read": {(200, "")},
    "admin_write": {(201, "")},
    "tenant": {(404, "no_tenant"), (503, "cache_unavailable")},
}


def test_redis_down_and_back_under_load_answers_no_500_and_loses_nothing(served, workers, broker, receivers):
    siem = receivers(SECRET)
    worker = workers(as_deployed=True)
    tenant = Tenant.streaming_to(siem)
    traffic = Traffic(tenant.calls(served)).start()
    traffic.wait_for(lambda: traffic.count() >= 40, TIMEOUT, "load before the outage")

    broker.stop()
    down = traffic.mark()
    traffic.wait_for(
        lambda: (
            traffic.count(down, kind="tenant", error="cache_unavailable") >= 3
            and traffic.count(down, kind="issue", status=200) >= 20
            and traffic.count(down, kind="admin_write", status=201) >= 10
        ),
        TIMEOUT,
        "issuances, admin writes and refused lookups while Redis is down",
    )

    broker.start()
    up = traffic.mark()
    traffic.wait_for(lambda: traffic.count(up, kind="tenant", status=404) >= 3, TIMEOUT, "lookups working again")
    traffic.wait_for(lambda: traffic.count(up) >= 80, TIMEOUT, "load after the outage")
    answers = traffic.stop()

    assert not unexpected(answers, ALLOWED), unexpected(answers, ALLOWED)[:10]
    assert all(answer.retry_after == "5" for answer in answers if answer.status == 503)
    assert all(answer.status != 503 for answer in traffic.answers(up)[-12:]), "Redis is back: no more 503s"
    issued = assert_every_credential_was_recorded(answers)
    assert len(issued) >= 40

    forget_broker_connections()  # this process's own pooled connections died with Redis
    wait_until(lambda: not worker.alive or worker.answers_ping(), TIMEOUT, "the worker to be back", every=0.5)
    assert worker.alive, worker.log_tail()
    assert b"Unrecoverable error" not in worker.log.read_bytes()
    tenant.stream_until_caught_up(served, siem)
    assert siem.accepted_ids == chain_ids(tenant.org)
    print(  # the figures, for whoever reads the test's output
        f"\nredis outage: {len(answers)} answers, {len(issued)} credentials, "
        f"{sum(a.status == 503 for a in answers)} x 503 cache_unavailable, {len(siem.accepted_ids)} events streamed"
    )
