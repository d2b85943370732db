"""Finding 7: probes of another org's ids left no trace. A 404 for an id or name on an org route is
now a platform-chain row naming who asked, for what, and which org (if any) holds it; the caller's
answer and work are the same either way, and a flood of probes is counted, not written row by row."""

import time
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keyward.audit import floods
from keyward.audit.models import AuditEvent
from tests.broker.conftest import make_agent, make_provider
from tests.factories import make_audit_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("still_window")]


def body_without_request_id(response) -> dict:
    return {key: value for key, value in response.json().items() if key != "request_id"}


def traces():
    return AuditEvent.objects.filter(org__isnull=True, event_type="access.not_found")


def test_a_probe_for_another_orgs_agent_is_traced_for_the_operator(callers):
    victim_agent = make_agent(callers.other_org.org, "victims-bot")
    prober = callers.client("admin")

    response = prober.get(f"/v1/agents/{victim_agent.name}")

    assert response.status_code == 404
    (trace,) = traces()
    assert (trace.actor_type, trace.actor_name) == ("account", callers.admin.email)
    assert trace.detail["org_id"] == callers.org.pk
    assert trace.detail["owner_org_id"] == callers.other_org.org.pk
    assert (trace.detail["route"], trace.detail["lookup"]) == ("agents", "victims-bot")
    assert trace.detail["action"] == "retrieve"
    assert trace.request_id == response["X-Request-Id"]
    # The prober's own org learns nothing from its audit log either.
    assert not AuditEvent.objects.filter(org=callers.org).exists()


def test_another_orgs_object_and_a_missing_one_answer_alike_with_the_same_work(callers):
    """Two callers, so each probe is the first of its window: the trace costs both the same."""
    make_agent(callers.other_org.org, "victims-bot")
    make_audit_events(None)  # the platform chain exists already, as it does on any running keyward
    answers, queries = [], []
    for who, name in (("admin", "victims-bot"), ("owner", "nobodys-bot")):
        client = callers.client(who)
        with CaptureQueriesContext(connection) as captured:
            answers.append(client.get(f"/v1/agents/{name}"))
        queries.append(len(captured))

    assert [answer.status_code for answer in answers] == [404, 404]
    assert body_without_request_id(answers[0]) == body_without_request_id(answers[1])
    assert queries[0] == queries[1]
    assert [row.detail["owner_org_id"] for row in traces().order_by("id")] == [callers.other_org.org.pk, None]


@pytest.mark.parametrize(
    ("path", "make"),
    [
        ("/v1/secrets/{}", lambda org: make_provider(org, "victim-provider").name),
        ("/v1/admins/{}/role", None),
    ],
)
def test_other_routes_trace_their_lookups_too(callers, path, make):
    lookup = make(callers.other_org.org) if make else callers.other_org.email
    client = callers.client("owner")
    response = (
        client.post(path.format(lookup), {"role": "viewer"}, format="json")
        if make is None
        else client.get(path.format(lookup))
    )
    assert response.status_code == 404
    assert traces().get().detail["owner_org_id"] == callers.other_org.org.pk


def test_a_flood_of_probes_is_one_row_then_a_count(callers):
    prober = callers.client("owner")
    for n in range(40):
        assert prober.get(f"/v1/agents/guess-{n}").status_code == 404
    assert traces().count() == 1

    with mock.patch("keyward.core.ratelimit.time.time", return_value=time.time() + 2 * floods.window_seconds()):
        assert floods.summarise_floods() == 1
    summary = AuditEvent.objects.get(event_type="access.not_found_summary")
    assert (summary.org, summary.detail["count"], summary.detail["account_id"]) == (None, 40, callers.owner.pk)
