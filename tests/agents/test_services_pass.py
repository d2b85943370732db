"""Registration races that only PostgreSQL can show (the services pass runs them)."""

import threading

import pytest
from django.db import connections

from keyward.agents import services
from keyward.agents.models import Agent
from keyward.audit.models import AuditEvent
from tests.factories import make_org

THREADS = 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_of_one_new_name_all_succeed():
    """Every racer gets the one agent; exactly one registered it, the others updated or found it."""
    org = make_org()
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def register(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            registration = services.register_agent(org=org, name="racer", description=f"from thread {n}")
            outcomes.append((registration.agent.pk, registration.created))
        except BaseException as exc:  # a failing thread must fail the test, not vanish
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(outcomes) == THREADS
    agent = Agent.objects.get(org=org, name="racer")
    assert {pk for pk, _created in outcomes} == {agent.pk}
    assert sorted(created for _pk, created in outcomes) == [False] * (THREADS - 1) + [True]
    assert AuditEvent.objects.filter(org=org, event_type="agent.registered").count() == 1
