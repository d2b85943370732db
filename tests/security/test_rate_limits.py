"""Finding 2: no rate limit at the broker, and every refusal took the chain lock.

150 issuances in 2.6 s all answered 200; 300 `policy_denied` requests wrote 300 rows; 300
`Bearer x.y.z` requests wrote 300 platform rows. Now: token buckets per agent and per end user, a cap
on live credentials, a budget for requests that prove nothing per source address, a bucket per
introspection key; refusals audited once per key and window, then summed up.
"""

import threading
import time
from unittest import mock

import pytest
from django.db import connections
from django.test import override_settings
from rest_framework.test import APIClient

from broker import limits, registry
from broker.models import IssuedCredential
from keyward.accounts.models import Role
from keyward.audit import floods
from keyward.audit.models import AuditEvent
from keyward.policies.models import Effect, Policy
from tests.broker.conftest import make_agent
from tests.factories import make_account, make_session_token

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("still_window")]

ASK = {"provider": "stripe", "scope": "charges:read", "ttl": "5m"}


def statuses(responses) -> list[int]:
    return [response.status_code for response in responses]


def assert_limited(response, code: str, limit: str) -> None:
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["error"] == code
    assert "credential" not in body
    assert int(response["Retry-After"]) >= 1
    assert limit in body["message"].lower() or limit in {"source", "outstanding"}


def refusal_rows(code: str = "rate_limited"):
    return AuditEvent.objects.filter(event_type="credential.denied", reason_code=code)


def close_the_window():
    """Move the clock past the refusal-audit window, so what it counted can be summed up."""
    later = time.time() + 2 * floods.window_seconds()
    return mock.patch("keyward.core.ratelimit.time.time", return_value=later)


def test_an_agent_gets_its_burst_then_429_and_one_row_per_window(world):
    world.agent.rate_per_minute, world.agent.burst = 1, 3
    world.agent.save()

    responses = [world.ask(ASK) for _ in range(10)]

    assert statuses(responses) == [200] * 3 + [429] * 7
    assert_limited(responses[3], "rate_limited", "agent")
    assert IssuedCredential.objects.count() == 3
    (first,) = refusal_rows()
    assert first.org == world.org
    assert first.agent == "invoice-bot"
    assert first.detail["limit"] == "agent"
    assert first.detail["aggregated"] is True

    with close_the_window():
        assert floods.summarise_floods() == 1
        assert floods.summarise_floods() == 0  # each window is summed up once
    summary = AuditEvent.objects.get(event_type="rate_limit.summary")
    assert (summary.org, summary.agent, summary.reason_code) == (world.org, "invoice-bot", "rate_limited")
    assert summary.detail["count"] == 7
    assert summary.detail["limit"] == "agent"


def test_a_flood_of_policy_denials_writes_a_bounded_number_of_rows(world):
    """300 requests the policy denies: at most the burst reaches the policy (and the chain)."""
    Policy.objects.create(org=world.org, provider="stripe", scope="charges:write", effect=Effect.DENY)
    world.agent.rate_per_minute, world.agent.burst = 1, 20
    world.agent.save()
    token = world.user_token()

    responses = [world.ask({**ASK, "scope": "charges:write"}, token=token) for _ in range(300)]

    assert statuses(responses).count(403) <= 21  # the burst, plus what refilled meanwhile
    assert statuses(responses).count(429) >= 279
    assert refusal_rows("policy_denied").count() == statuses(responses).count(403)
    # One row per key and window: the agent's bucket, then the end user's (emptied by the same flood).
    assert {row.detail["limit"] for row in refusal_rows("rate_limited")} <= {"agent", "end_user"}
    assert refusal_rows("rate_limited").count() <= 2
    assert AuditEvent.objects.filter(org=world.org).count() <= 24


def test_an_end_user_is_limited_across_agents(world):
    make_agent(world.org, "second-bot")
    world.org.broker_rate_per_end_user, world.org.broker_burst_per_end_user = 1, 2
    world.org.save()
    token = world.user_token(sub="bob@example.com")

    answers = [world.ask(ASK, token=token, agent=agent) for agent in ("invoice-bot", "second-bot", "second-bot")]

    assert statuses(answers) == [200, 200, 429]
    assert_limited(answers[2], "rate_limited", "end user")
    assert refusal_rows().get().detail["limit"] == "end_user"
    assert world.ask(ASK, token=world.user_token(sub="carol@example.com")).status_code == 200  # another user


def test_an_agents_own_limit_beats_its_orgs_which_beats_the_platforms(world, settings):
    settings.KEYWARD_BROKER_AGENT_BURST = 5
    other = make_agent(world.org, "other-bot")
    world.org.broker_burst_per_agent = 3
    world.org.save()
    world.agent.burst = 1
    world.agent.save()

    assert limits.agent_limit(world.agent).burst == 1
    assert limits.agent_limit(other).burst == 3
    world.org.broker_burst_per_agent = None
    world.org.save()
    other.refresh_from_db()
    assert limits.agent_limit(other).burst == 5


def test_garbage_is_limited_per_source_before_it_reaches_the_audit_log(world, settings):
    settings.KEYWARD_BROKER_UNPROVEN_BURST = 5
    garbage = [world.ask(ASK, token="x.y.z", REMOTE_ADDR="203.0.113.7") for _ in range(300)]

    assert statuses(garbage) == [401] * 5 + [429] * 295
    assert_limited(garbage[5], "rate_limited", "source")
    platform = AuditEvent.objects.filter(org__isnull=True)
    assert platform.filter(reason_code="invalid_user_token").count() == 5
    assert platform.filter(reason_code="rate_limited").count() == 1
    # While its budget is spent the address gets nothing, not even with a good token; others do.
    assert world.ask(ASK, REMOTE_ADDR="203.0.113.7").status_code == 429
    assert world.ask(ASK, REMOTE_ADDR="203.0.113.8").status_code == 200
    assert not IssuedCredential.objects.filter(agent=world.agent).exclude(end_user="alice@example.com").exists()


def test_good_requests_do_not_spend_the_source_budget(world, settings):
    settings.KEYWARD_BROKER_UNPROVEN_BURST = 2
    world.agent.burst = 100
    world.agent.save()
    assert statuses([world.ask(ASK, REMOTE_ADDR="203.0.113.9") for _ in range(10)]) == [200] * 10


def test_an_agent_holding_its_cap_of_live_credentials_gets_429_until_one_goes(world):
    world.agent.max_outstanding = 2
    world.agent.save()
    first, second = world.ask(ASK).json(), world.ask(ASK).json()

    refused = world.ask(ASK)

    assert_limited(refused, "too_many_outstanding", "outstanding")
    assert 250 <= int(refused["Retry-After"]) <= 301  # the soonest expiry: a 5-minute credential
    assert refusal_rows("too_many_outstanding").get().detail == {
        "limit": "outstanding",
        "cap": 2,
        "aggregated": True,
        "window_seconds": floods.window_seconds(),
        "policy_id": refusal_rows("too_many_outstanding").get().detail["policy_id"],
        "ttl_seconds": 300,
    }
    registry.revoke(IssuedCredential.objects.get(jti=first["credential_id"]), reason="make room")
    assert world.ask(ASK).status_code == 200
    assert second["credential_id"] != first["credential_id"]


@override_settings(KEYWARD_INTROSPECTION_BURST=2, KEYWARD_INTROSPECTION_RATE_PER_MINUTE=1)
def test_introspection_has_its_own_limit(world):
    credential = world.ask(ASK).json()["credential"]
    key = registry.create_introspection_key(world.org, name="resource server").key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    answers = [client.post("/v1/introspect", {"token": credential}, format="json") for _ in range(5)]

    assert statuses(answers) == [200, 200, 429, 429, 429]
    assert answers[2].json()["error"] == "rate_limited"
    assert int(answers[2]["Retry-After"]) >= 1
    (row,) = AuditEvent.objects.filter(event_type="introspection.rate_limited")
    assert row.org == world.org
    assert world.ask(ASK).status_code == 200  # the broker's own limits are separate


def test_limits_hold_per_process_while_redis_is_unreachable(world, settings):
    """Documented fallback: Redis down means per-process buckets, never a 500 and never no limit."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    world.agent.rate_per_minute, world.agent.burst = 1, 2
    world.agent.save()

    assert statuses([world.ask(ASK) for _ in range(4)]) == [200, 200, 429, 429]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_many_threads_one_agent_get_exactly_the_burst(world):
    """30 requests at once, one agent with a burst of 10 (refilling one a minute): exactly 10 succeed."""
    world.agent.rate_per_minute, world.agent.burst = 1, 10
    world.agent.save()
    tokens = [world.user_token(sub=f"user{n}@example.com") for n in range(30)]
    barrier = threading.Barrier(len(tokens))
    results: list[int] = []
    errors: list[BaseException] = []

    def ask(token: str) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(world.ask(ASK, token=token).status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(results) == [200] * 10 + [429] * 20
    assert IssuedCredential.objects.filter(agent=world.agent).count() == 10
    assert refusal_rows().count() == 1


def test_owners_and_admins_set_the_limits_through_the_api(world):
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(make_account(world.org, Role.OWNER))}")

    org = owner.patch("/v1/org", {"broker_burst_per_end_user": 2, "max_outstanding_per_agent": 50}, format="json")
    agent = owner.post("/v1/agents", {"name": "invoice-bot", "burst": 1, "rate_per_minute": 1}, format="json")
    refused = owner.post("/v1/agents", {"name": "invoice-bot", "burst": 0}, format="json")

    assert org.status_code == 200, org.content
    assert (org.json()["broker_burst_per_end_user"], org.json()["max_outstanding_per_agent"]) == (2, 50)
    assert agent.status_code == 200, agent.content
    assert (agent.json()["burst"], agent.json()["rate_per_minute"], agent.json()["max_outstanding"]) == (1, 1, None)
    assert refused.status_code == 400
    assert "burst" in refused.json()["fields"]
    assert statuses([world.ask(ASK), world.ask(ASK)]) == [200, 429]
    changed = AuditEvent.objects.get(event_type="agent.updated")
    assert changed.detail["changed"] == ["burst", "rate_per_minute"]
