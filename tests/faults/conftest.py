"""Fault tests: keyward's real processes while PostgreSQL or Redis fail under them (services pass).

keyward runs as deployed: gunicorn with docker/gunicorn.conf.py on a free 127.0.0.1 port and a
prefork Celery worker, both on the database pytest-django created for the test and on a private
redis-server the test may kill. The org streams its audit log to a SIEM receiver on 127.0.0.1.
"""

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from broker.models import IssuedCredential
from keyward.audit.models import AuditEvent
from keyward.idp.dev import issue_dev_user_token
from keyward.tenancy.models import Org
from tests.broker.conftest import _fresh_key_caches, allow, make_agent, make_provider  # noqa: F401
from tests.factories import make_session_token
from tests.faults.traffic import REQUEST_TIMEOUT, Answer, Call
from tests.processes import Gunicorn, keyward_environment
from tests.siem.conftest import caught_up, chain_ids, receivers, streamed_org  # noqa: F401
from tests.siem.receiver import SiemReceiver

READ = {"provider": "stripe", "scope": "charges:read", "ttl": "5m"}
CATCH_UP_ATTEMPTS = 30


@pytest.fixture
def served(transactional_db, broker, tmp_path) -> Iterator[Gunicorn]:
    """keyward behind gunicorn, stopped before the test's database is emptied."""
    env = keyward_environment(
        tmp_path / "web-var",
        redis_url=broker.url,
        KEYWARD_TENANT_LOOKUP_RATE="100000/minute",  # every client is 127.0.0.1: the limit is not under test
    )
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    yield server
    server.stop()


@dataclass
class Tenant:
    """An org streaming to a SIEM, with an agent allowed to ask for stripe credentials."""

    org: Org
    session_token: str
    user_token: str

    @classmethod
    def streaming_to(cls, siem: SiemReceiver) -> "Tenant":
        org, owner = streamed_org(siem)
        # Outages are under test here, not the broker's limits: the load stays far under these.
        make_agent(org, rate_per_minute=1_000_000, burst=100_000, max_outstanding=1_000_000)
        org.broker_rate_per_end_user, org.broker_burst_per_end_user = 1_000_000, 100_000
        org.save(update_fields=["broker_rate_per_end_user", "broker_burst_per_end_user"])
        make_provider(org)
        allow(org, provider="stripe")
        user_token = issue_dev_user_token(org, subject="alice@example.com", ttl_seconds=600)
        return cls(org=org, session_token=make_session_token(owner), user_token=user_token)

    def calls(self, server: Gunicorn) -> dict[str, Call]:
        """The request mix: broker issuance, admin read, audited admin write, rate-limited public lookup."""
        names = itertools.count(1)
        admin = {"Authorization": f"Bearer {self.session_token}"}
        agent = {"Authorization": f"Bearer {self.user_token}", "X-Keyward-Agent": "invoice-bot"}

        def issue(session: requests.Session) -> requests.Response:
            return session.post(server.url("/v1/credentials"), json=READ, headers=agent, timeout=REQUEST_TIMEOUT)

        def admin_read(session: requests.Session) -> requests.Response:
            return session.get(server.url("/v1/agents"), headers=admin, timeout=REQUEST_TIMEOUT)

        def admin_write(session: requests.Session) -> requests.Response:
            body = {"name": f"load-agent-{next(names)}"}
            return session.post(server.url("/v1/agents"), json=body, headers=admin, timeout=REQUEST_TIMEOUT)

        def tenant_lookup(session: requests.Session) -> requests.Response:
            params = {"email": "someone@unrouted.example"}
            return session.get(server.url("/auth/tenant"), params=params, timeout=REQUEST_TIMEOUT)

        return {"issue": issue, "admin_read": admin_read, "admin_write": admin_write, "tenant": tenant_lookup}

    def stream_until_caught_up(self, server: Gunicorn, siem: SiemReceiver) -> None:
        """Write (each write wakes delivery) until the SIEM holds every row of the org's chain.

        Bounded; no beat runs here, so a wake-up lost while Redis was down is only redone by the
        next write, as beat's sweep would redo it in production.
        """
        admin = {"Authorization": f"Bearer {self.session_token}"}
        for attempt in range(CATCH_UP_ATTEMPTS):
            body = {"name": f"catch-up-{attempt}"}
            response = requests.post(server.url("/v1/agents"), json=body, headers=admin, timeout=REQUEST_TIMEOUT)
            assert response.status_code == 201, response.text
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if caught_up(siem, self.org)():
                    return
                time.sleep(0.1)
        raise AssertionError(f"the SIEM never caught up with the org's chain: {siem.summary()}")


def unexpected(answers: list[Answer], allowed: dict[str, set[tuple[int, str]]]) -> list[Answer]:
    """The answers whose (status, error code) their kind does not allow."""
    return [answer for answer in answers if (answer.status, answer.error) not in allowed[answer.kind]]


def assert_every_credential_was_recorded(answers: list[Answer]) -> set[str]:
    """Each credential a client received has its issued record and its `credential.issued` audit row."""
    issued = {answer.credential_id for answer in answers if answer.kind == "issue" and answer.status == 200}
    assert "" not in issued
    recorded = set(IssuedCredential.objects.filter(jti__in=issued).values_list("jti", flat=True))
    audited = set(
        AuditEvent.objects.filter(event_type="credential.issued", credential_jti__in=issued).values_list(
            "credential_jti", flat=True
        )
    )
    assert recorded == issued, f"{len(issued - recorded)} credentials without an issued record"
    assert audited == issued, f"{len(issued - audited)} credentials without their audit row"
    return issued
