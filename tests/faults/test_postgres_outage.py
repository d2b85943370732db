"""PostgreSQL connections terminated under load, again and again: 503s, never a 500, and recovery.

The test terminates every backend connected to its own database (the test_… database pytest-django
created; never another database) except its own, while clients issue credentials and read the
admin API. What must hold: every answer is a success or a documented 503; no client ever holds a
credential whose audit row is missing; afterwards every request succeeds again without restarting
anything, and the worker, whose connections were terminated too, still streams every event.
"""

import pytest
from django.db import connection

from tests.faults.conftest import Tenant, assert_every_credential_was_recorded, unexpected
from tests.faults.traffic import Traffic
from tests.outages import terminate_backends
from tests.siem.conftest import SECRET, chain_ids

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

TIMEOUT = 40.0
TERMINATIONS = 5
AFTERWARDS = 40
UNAVAILABLE = {(503, "database_unavailable"), (503, "audit_unavailable")}
ALLOWED = {"issue": {(200, ""), *UNAVAILABLE}, "admin_read": {(200, ""), *UNAVAILABLE}}


def terminate_other_backends() -> int:
    """Every backend of this test's database but the test's own; how many."""
    connection.ensure_connection()
    return terminate_backends(sparing_pid=connection.connection.info.backend_pid)


def test_terminated_connections_under_load_are_503_never_500_and_recovered(served, workers, receivers):
    siem = receivers(SECRET)
    worker = workers(as_deployed=True)
    tenant = Tenant.streaming_to(siem)
    calls = tenant.calls(served)
    traffic = Traffic({"issue": calls["issue"], "admin_read": calls["admin_read"]}).start()
    traffic.wait_for(lambda: traffic.count() >= 30, TIMEOUT, "load before the first termination")

    terminated = []
    for _ in range(TERMINATIONS):
        mark = traffic.mark()
        terminated.append(terminate_other_backends())
        traffic.wait_for(lambda mark=mark: traffic.count(mark) >= 30, TIMEOUT, "load after a termination")
    answers = traffic.stop()

    assert all(count > 0 for count in terminated), terminated  # each round cut live connections
    assert not unexpected(answers, ALLOWED), unexpected(answers, ALLOWED)[:10]
    assert all(answer.retry_after == "5" for answer in answers if answer.status == 503)
    issued = assert_every_credential_was_recorded(answers)

    afterwards = Traffic({"issue": calls["issue"], "admin_read": calls["admin_read"]}, threads=4, cap=10).start()
    afterwards.wait_for(lambda: afterwards.count() >= AFTERWARDS, TIMEOUT, "requests after the terminations")
    later = afterwards.stop()
    assert {(answer.status, answer.error) for answer in later} <= {(200, "")}, later
    assert_every_credential_was_recorded(later)

    assert worker.alive, worker.log_tail()
    tenant.stream_until_caught_up(served, siem)
    assert siem.accepted_ids == chain_ids(tenant.org)
    print(  # the figures, for whoever reads the test's output
        f"\npostgres terminations: {terminated} backends terminated; {len(answers)} answers under load, "
        f"{len(issued)} credentials, {sum(a.status == 503 for a in answers)} x 503 "
        f"({sorted({a.error for a in answers if a.status == 503})}); {len(later)} answers after, all 200"
    )
