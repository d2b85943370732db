"""/v1/policies: permissions, validation, audit rows, filters, and the simulator."""

import pytest

from keyward.audit import writer
from keyward.audit.models import AuditEvent
from keyward.policies.engine import evaluate
from keyward.policies.models import Policy
from tests.factories import make_policy
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

ADMIN_ONLY = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}
RULE = {"agent": "invoice-bot", "provider": "stripe", "scope": "charges:read", "environment": "prod", "effect": "allow"}


def create(callers, **overrides):
    return callers.client("admin").post("/v1/policies", {**RULE, **overrides}, format="json")


def simulate(callers, who: str = "admin", **body):
    request = {"agent": "invoice-bot", "provider": "stripe", "scope": "charges:read", **body}
    return callers.client(who).post("/v1/policies/simulate", request, format="json")


def test_create_matrix_shape_and_audit(callers):
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/policies",
        {"anonymous": 401, "other_org": 201, "viewer": 403, "admin": 201, "owner": 201},
        data=lambda who: {**RULE, "agent": f"bot-{who.replace('_', '-')}", "description": "invoices"},
    )
    body = responses["admin"].json()
    assert body == {
        "id": body["id"],
        "agent": "bot-admin",
        "provider": "stripe",
        "scope": "charges:read",
        "environment": "prod",
        "effect": "allow",
        "conditions": {},
        "description": "invoices",
        "created_at": body["created_at"],
    }
    assert Policy.objects.get(pk=body["id"]).org == callers.org
    assert Policy.objects.get(pk=responses["other_org"].json()["id"]).org == callers.other_org.org
    event = AuditEvent.objects.get(org=callers.org, event_type="policy.created", agent="bot-admin")
    assert event.actor_id == str(callers.admin.pk)
    assert (event.provider, event.scope, event.environment) == ("stripe", "charges:read", "prod")
    assert event.detail == {"policy_id": body["id"], "effect": "allow", "conditions": {}}


def test_list_retrieve_delete_matrix_and_audit(callers):
    rule = create(callers).json()
    path = f"/v1/policies/{rule['id']}"

    listed = assert_permission_matrix(callers, "GET", "/v1/policies", {**ADMIN_ONLY, "other_org": 200})
    assert [row["id"] for row in listed["admin"].json()["results"]] == [rule["id"]]
    assert listed["other_org"].json()["results"] == []
    assert assert_permission_matrix(callers, "GET", path, ADMIN_ONLY)["owner"].json() == rule
    assert_permission_matrix(callers, "DELETE", path, {**ADMIN_ONLY, "admin": 204, "owner": 404})

    assert not Policy.objects.exists()
    event = AuditEvent.objects.get(org=callers.org, event_type="policy.deleted")
    assert event.actor_id == str(callers.admin.pk)
    assert event.detail["policy_id"] == rule["id"]
    assert event.agent == "invoice-bot"


def test_simulate_matrix_is_scoped_to_the_callers_org(callers):
    rule = create(callers).json()
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/policies/simulate",
        {**ADMIN_ONLY, "other_org": 200},
        data={"agent": "invoice-bot", "provider": "stripe", "scope": "charges:read"},
    )
    assert responses["admin"].json()["policy"] == rule
    assert responses["other_org"].json()["policy"] is None
    assert responses["other_org"].json()["decision"] == "deny"


def test_another_orgs_policy_cannot_be_deleted(callers):
    theirs = make_policy(callers.other_org.org, "deny")
    response = callers.client("admin").delete(f"/v1/policies/{theirs.pk}")
    assert response.status_code == 404
    assert Policy.objects.filter(pk=theirs.pk).exists()
    assert not AuditEvent.objects.filter(event_type="policy.deleted").exists()


@pytest.mark.parametrize("any_value", ["", "*", None])
def test_empty_star_and_null_all_mean_any(callers, any_value):
    body = dict.fromkeys(("agent", "provider", "scope", "environment"), any_value)
    response = create(callers, **body, effect="deny")
    assert response.status_code == 201, response.content
    assert {field: response.json()[field] for field in body} == dict.fromkeys(body, "")


def test_absent_fields_mean_any(callers):
    response = callers.client("admin").post("/v1/policies", {"effect": "deny"}, format="json")
    assert response.status_code == 201
    rule = Policy.objects.get()
    assert (rule.agent, rule.provider, rule.scope, rule.environment, rule.field_count) == ("", "", "", "", 0)


def test_conditions_are_stored_normalised(callers):
    conditions = {
        "time_window": {"days": ["FRI", "mon"], "start": "22:00", "end": "02:00", "tz": "Europe/Paris"},
        "source_cidrs": ["10.0.0.0/8", "2001:DB8::/32"],
    }
    response = create(callers, conditions=conditions)
    assert response.status_code == 201, response.content
    assert response.json()["conditions"] == {
        "time_window": {"days": ["mon", "fri"], "start": "22:00", "end": "02:00", "tz": "Europe/Paris"},
        "source_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"agent": "Invoice-Bot"}, "agent"),
        ({"agent": "invoice bot"}, "agent"),
        ({"agent": "invoice-bot\n"}, "agent"),
        ({"agent": "-bot"}, "agent"),
        ({"agent": "b" * 101}, "agent"),
        ({"provider": "stripe/live"}, "provider"),
        ({"provider": "*stripe"}, "provider"),
        ({"scope": "charges:re*"}, "scope"),
        ({"scope": "charges*"}, "scope"),
        ({"scope": "charges:read write"}, "scope"),
        ({"scope": "charges:read\n"}, "scope"),
        ({"scope": ":read"}, "scope"),
        ({"environment": "Prod"}, "environment"),
        ({"environment": "pro.d"}, "environment"),
        ({"environment": "e" * 65}, "environment"),
        ({"effect": "maybe"}, "effect"),
        ({"effect": None}, "effect"),
        ({"effect": ""}, "effect"),
        ({"conditions": ["source_cidrs"]}, "conditions"),
        ({"conditions": {"geo": ["FR"]}}, "conditions"),
        ({"conditions": {"source_cidrs": ["10.0.0.1/8"]}}, "conditions"),
        ({"conditions": {"time_window": {"start": "09:00", "end": "17:00", "tz": "Nowhere/City"}}}, "conditions"),
        ({"conditions": {"time_window": {"start": "25:00", "end": "17:00"}}}, "conditions"),
        ({"description": "d" * 501}, "description"),
    ],
)
def test_bad_rules_are_400_with_the_field_and_nothing_is_stored(callers, overrides, field):
    response = create(callers, **overrides)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]
    assert not Policy.objects.exists()
    assert not AuditEvent.objects.filter(event_type="policy.created").exists()


def test_every_bad_field_is_named_at_once(callers):
    response = create(callers, agent="Bad", scope="a:*b", environment="PROD", conditions={"x": 1})
    assert set(response.json()["fields"]) == {"agent", "scope", "environment", "conditions"}


def test_no_policy_without_its_audit_row(callers, monkeypatch):
    def audit_down(**kwargs):
        raise writer.AuditUnavailable("The audit log is unavailable, so the action was not performed.")

    monkeypatch.setattr("keyward.policies.services.record_event", audit_down)
    response = create(callers)
    assert response.status_code == 503
    assert response.json()["error"] == "audit_unavailable"
    assert not Policy.objects.exists()

    rule = make_policy(callers.org, "deny")
    assert callers.client("admin").delete(f"/v1/policies/{rule.pk}").status_code == 503
    assert Policy.objects.filter(pk=rule.pk).exists()


def test_list_filters(callers):
    mine = make_policy(callers.org, "allow", agent="invoice-bot", provider="stripe")
    denied = make_policy(callers.org, "deny", agent="invoice-bot", provider="github")
    anyone = make_policy(callers.org, "require_approval", provider="stripe")
    client = callers.client("admin")

    def ids(query: str) -> list[int]:
        response = client.get(f"/v1/policies{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids("") == [mine.pk, denied.pk, anyone.pk]
    assert ids("?agent=invoice-bot") == [mine.pk, denied.pk]
    assert ids("?agent=*") == [anyone.pk]
    assert ids("?provider=stripe") == [mine.pk, anyone.pk]
    assert ids("?provider=stripe&effect=allow") == [mine.pk]
    assert ids("?effect=deny") == [denied.pk]
    assert client.get("/v1/policies?effect=maybe").json()["fields"] == {"effect": ['"maybe" is not a valid choice.']}


def test_list_pages_with_a_cursor(callers):
    rules = [make_policy(callers.org, "allow", agent=f"bot-{n}") for n in range(5)]
    client = callers.client("admin")
    first = client.get("/v1/policies?limit=3").json()
    second = client.get(first["next"]).json()
    assert [row["id"] for row in first["results"] + second["results"]] == [rule.pk for rule in rules]
    assert second["next"] is None
    assert client.get("/v1/policies?cursor=garbage").status_code == 400


def test_simulate_returns_the_deciding_rule(callers):
    make_policy(callers.org, "deny", provider="stripe")
    rule = create(callers, scope="charges:*").json()

    response = simulate(callers)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "decision": "allow",
        "effect": "allow",
        "policy": rule,
        "scope": "charges:read",
        "reason": response.json()["reason"],
    }
    assert f"rule #{rule['id']}" in response.json()["reason"]


def test_simulate_default_deny_names_no_rule(callers):
    body = simulate(callers, provider="github").json()
    assert (body["decision"], body["effect"], body["policy"]) == ("deny", "deny", None)
    assert "deny by default" in body["reason"]


def test_simulate_several_scopes(callers):
    make_policy(callers.org, "allow", provider="stripe", scope="charges:*")
    approval = make_policy(callers.org, "require_approval", provider="stripe", scope="refunds:*")
    body = simulate(callers, scope="charges:read refunds:create charges:read").json()
    assert (body["decision"], body["scope"], body["policy"]["id"]) == (
        "require_approval",
        "refunds:create",
        approval.pk,
    )


def test_simulate_environment_defaults_to_prod(callers):
    prod = make_policy(callers.org, "allow", environment="prod")
    staging = make_policy(callers.org, "deny", environment="staging")
    assert simulate(callers).json()["policy"]["id"] == prod.pk
    assert simulate(callers, environment="staging").json()["policy"]["id"] == staging.pk


def test_simulate_uses_ip_and_time(callers):
    make_policy(callers.org, "deny")
    window = {"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "UTC"}
    rule = make_policy(
        callers.org, "allow", provider="stripe", conditions={"time_window": window, "source_cidrs": ["10.0.0.0/8"]}
    )
    monday = "2026-11-23T10:00:00Z"
    assert simulate(callers, ip="10.1.1.1", at=monday).json()["policy"]["id"] == rule.pk
    assert simulate(callers, ip="10.1.1.1", at="2026-11-24T10:00:00Z").json()["decision"] == "deny"
    assert simulate(callers, ip="192.0.2.1", at=monday).json()["decision"] == "deny"
    assert simulate(callers, at=monday).json()["decision"] == "deny"


def test_simulate_answers_what_the_engine_answers(callers):
    for effect, scope in (("allow", "charges:*"), ("deny", "charges:refunds:*"), ("require_approval", "")):
        make_policy(callers.org, effect, scope=scope)
    for scope in ("charges:read", "charges:refunds:write", "payouts:read"):
        engine = evaluate(callers.org, agent="invoice-bot", provider="stripe", scopes=[scope], environment="prod")
        body = simulate(callers, scope=scope).json()
        assert (body["effect"], body["policy"]["id"], body["reason"]) == (
            engine.effect,
            engine.policy_id,
            engine.reason,
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "charges:*"}, "scope"),
        ({"scope": ""}, "scope"),
        ({"scope": " ".join(f"s{n}" for n in range(21))}, "scope"),
        ({"agent": "*"}, "agent"),
        ({"agent": ""}, "agent"),
        ({"agent": "invoice-bot "}, "agent"),
        ({"provider": "Stripe"}, "provider"),
        ({"environment": "PROD"}, "environment"),
        ({"ip": "10.0.0.300"}, "ip"),
        ({"at": "monday"}, "at"),
    ],
)
def test_bad_simulations_are_400_with_the_field(callers, body, field):
    response = simulate(callers, **body)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_simulate_is_post_only_and_ids_are_numbers(callers):
    client = callers.client("admin")
    assert client.get("/v1/policies/simulate").status_code == 405
    assert client.get("/v1/policies/abc").status_code == 404


def test_simulation_is_not_audited_and_changes_nothing(callers):
    make_policy(callers.org, "allow")
    before = AuditEvent.objects.count()
    simulate(callers)
    assert AuditEvent.objects.count() == before
