"""The precedence algorithm of keyward.policies.engine.evaluate (DESIGN.md §3)."""

import ipaddress
import random
from datetime import UTC, datetime

import pytest

from keyward import scopes as scope_rules
from keyward.policies import engine
from keyward.policies.engine import evaluate
from keyward.policies.models import EFFECT_RANK, Policy
from tests.factories import make_org, make_policy

pytestmark = pytest.mark.django_db

REQUEST = {"agent": "invoice-bot", "provider": "stripe", "environment": "prod"}
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def decide(org, *scopes: str, **overrides):
    return evaluate(org, **{**REQUEST, **overrides}, scopes=list(scopes or ["charges:read"]))


@pytest.fixture
def org():
    return make_org()


def test_no_rule_is_deny_by_default(org):
    decision = decide(org)
    assert decision.effect == "deny"
    assert decision.policy is None
    assert decision.policy_id is None
    assert decision.scope == "charges:read"
    assert "deny by default" in decision.reason
    assert not decision.allowed


def test_another_orgs_rules_never_apply(org):
    make_policy(make_org(), "allow")
    assert decide(org).effect == "deny"


@pytest.mark.parametrize(
    ("field", "value"),
    [("agent", "other-bot"), ("provider", "github"), ("scope", "charges:write"), ("environment", "staging")],
)
def test_a_rule_naming_another_value_does_not_match(org, field, value):
    make_policy(org, "allow", **{field: value})
    assert decide(org).policy is None


def test_empty_fields_match_anything(org):
    rule = make_policy(org, "allow")
    decision = decide(org, "refunds:write", agent="any-bot", provider="github", environment="dev")
    assert (decision.effect, decision.policy) == ("allow", rule)
    assert decision.allowed


@pytest.mark.parametrize(("specific", "general"), [("allow", "deny"), ("deny", "allow"), ("allow", "require_approval")])
def test_more_fields_beat_fewer_whatever_the_effects(org, specific, general):
    make_policy(org, general, provider="stripe")
    rule = make_policy(org, specific, agent="invoice-bot", provider="stripe", scope="charges:read")
    decision = decide(org)
    assert (decision.effect, decision.policy_id) == (specific, rule.pk)


def test_field_count_comes_before_scope_precision(org):
    """(agent, provider, charges:*) has three fields; (provider, charges:read) has two."""
    make_policy(org, "deny", provider="stripe", scope="charges:read")
    rule = make_policy(org, "allow", agent="invoice-bot", provider="stripe", scope="charges:*")
    assert decide(org).policy == rule


def test_exact_scope_beats_prefix_beats_any(org):
    exact = make_policy(org, "allow", provider="stripe", scope="charges:read")
    prefix = make_policy(org, "deny", provider="stripe", scope="charges:*")
    anything = make_policy(org, "require_approval", provider="stripe", scope="*")

    assert anything.scope == ""  # "*" is stored as "any"
    assert decide(org, "charges:read").policy == exact
    assert decide(org, "charges:write").policy == prefix
    assert decide(org, "refunds:read").policy == anything
    assert decide(org, "charges:read").effect == "allow"


def test_a_longer_prefix_beats_a_shorter_one(org):
    make_policy(org, "deny", scope="charges:*")
    longer = make_policy(org, "allow", scope="charges:refunds:*")
    assert decide(org, "charges:refunds:write").policy == longer
    assert decide(org, "charges:read").effect == "deny"


@pytest.mark.parametrize(
    ("requested", "matches"),
    [
        ("charges:read", True),
        ("charges:refunds:write", True),
        ("charges", False),
        ("chargesX:read", False),
        ("charges-x:read", False),
        ("xcharges:read", False),
    ],
)
def test_prefix_wildcards_stop_at_segment_boundaries(org, requested, matches):
    rule = make_policy(org, "allow", scope="charges:*")
    assert (decide(org, requested).policy == rule) is matches


@pytest.mark.parametrize(
    "effects",
    [
        ("allow", "require_approval", "deny"),
        ("deny", "require_approval", "allow"),
        ("require_approval", "deny", "allow"),
    ],
)
def test_equally_specific_rules_resolve_to_the_most_restrictive(org, effects):
    rules = {effect: make_policy(org, effect, provider="stripe", scope="charges:read") for effect in effects}
    assert decide(org).policy == rules["deny"]
    rules["deny"].delete()
    assert decide(org).policy == rules["require_approval"]
    rules["require_approval"].delete()
    assert decide(org).policy == rules["allow"]


def test_identical_rules_resolve_to_the_lowest_id_every_time(org):
    first, *_ = [make_policy(org, "deny", provider="stripe") for _ in range(5)]
    assert {decide(org).policy_id for _ in range(5)} == {first.pk}


def test_environment_specific_rules(org):
    make_policy(org, "deny", provider="stripe")
    staging = make_policy(org, "allow", provider="stripe", environment="staging")
    approval_in_prod = make_policy(org, "require_approval", provider="stripe", scope="charges:*", environment="prod")

    assert decide(org, environment="staging").policy == staging
    assert decide(org, environment="prod").policy == approval_in_prod
    assert decide(org, "refunds:read", environment="prod").effect == "deny"
    assert decide(org, environment="dev").effect == "deny"


def test_several_scopes_the_most_restrictive_outcome_decides(org, django_assert_num_queries):
    make_policy(org, "allow", provider="stripe", scope="charges:*")
    approval = make_policy(org, "require_approval", provider="stripe", scope="refunds:write")

    with django_assert_num_queries(2):
        decision = decide(org, "charges:read", "refunds:write")
    assert (decision.effect, decision.policy, decision.scope) == ("require_approval", approval, "refunds:write")
    assert "2 requested scopes" in decision.reason


def test_a_denied_scope_decides_and_stops_the_evaluation(org, django_assert_num_queries):
    make_policy(org, "allow", provider="stripe", scope="charges:*")
    with django_assert_num_queries(2):
        decision = decide(org, "charges:read", "payouts:write", "charges:write")
    assert (decision.effect, decision.policy, decision.scope) == ("deny", None, "payouts:write")


def test_all_allowed_scopes_record_the_first_scopes_rule(org):
    first = make_policy(org, "allow", scope="charges:read")
    make_policy(org, "allow", scope="refunds:read")
    decision = decide(org, "charges:read", "refunds:read", "charges:read")
    assert (decision.effect, decision.policy) == ("allow", first)


def test_one_query_per_scope(org, django_assert_num_queries):
    for n in range(30):
        make_policy(org, "allow", agent=f"bot-{n}", provider="stripe")
    make_policy(org, "allow", provider="stripe")
    with django_assert_num_queries(1):
        decide(org)
    with django_assert_num_queries(3):
        decide(org, "a:b", "c:d", "e:f")


def test_the_org_may_be_given_by_id(org, django_assert_num_queries):
    rule = make_policy(org, "allow")
    with django_assert_num_queries(1):
        assert decide(org.pk).policy == rule


@pytest.mark.parametrize(
    "scopes",
    [[], "charges:read", ["charges:*"], ["*"], [""], ["charges:read\n"], ["a b"], [f"s{n}" for n in range(21)], [7]],
)
def test_requests_name_scopes_not_patterns(org, scopes):
    make_policy(org, "allow", scope="charges:*")
    with pytest.raises(ValueError):  # noqa: PT011 - every malformed list is the same ValueError
        evaluate(org, **REQUEST, scopes=scopes)


def test_now_must_be_aware(org):
    with pytest.raises(ValueError, match="aware"):
        evaluate(org, **REQUEST, scopes=["charges:read"], now=datetime(2026, 11, 23, 12, 0))


def test_the_worked_example_in_docs_api_md(org):
    rules = [
        make_policy(org, "deny", provider="stripe"),
        make_policy(org, "allow", provider="stripe", scope="charges:*"),
        make_policy(org, "require_approval", agent="invoice-bot", provider="stripe", scope="charges:*"),
        make_policy(org, "deny", provider="stripe", scope="charges:refunds:write"),
        make_policy(org, "allow", agent="invoice-bot", provider="stripe", scope="charges:*"),
    ]
    approval = decide(org, "charges:read")
    assert (approval.effect, approval.policy) == ("require_approval", rules[2])
    assert approval.reason == (
        f"rule #{rules[2].pk} [invoice-bot/stripe/charges:*/* -> require_approval] requires approval for charges:read"
    )
    assert decide(org, "charges:refunds:write").policy == rules[2]
    assert decide(org, "payouts:read").policy == rules[0]
    assert decide(org, provider="github").policy is None
    both = decide(org, "charges:read", "payouts:read")
    assert (both.effect, both.policy, both.scope) == ("deny", rules[0], "payouts:read")


# Conditions ------------------------------------------------------------------------------------


def test_a_failing_condition_lets_the_next_rule_decide(org):
    make_policy(org, "deny", provider="stripe")
    office = make_policy(
        org, "allow", provider="stripe", scope="charges:read", conditions={"source_cidrs": ["10.0.0.0/8"]}
    )

    assert decide(org, ip="10.1.2.3").policy == office
    assert decide(org, ip="192.0.2.1").effect == "deny"
    assert decide(org, ip=None).effect == "deny"
    assert decide(org, ip="not an address").effect == "deny"


@pytest.mark.parametrize(
    ("cidrs", "ip", "holds"),
    [
        (["203.0.113.0/24"], "203.0.113.77", True),
        (["203.0.113.0/24"], "203.0.114.1", False),
        (["203.0.113.0/24"], "::ffff:203.0.113.77", True),
        (["2001:db8::/32"], "2001:db8:1::5", True),
        (["2001:db8::/32"], "2001:db9::5", False),
        (["2001:db8::/32"], "203.0.113.77", False),
        (["0.0.0.0/0"], "2001:db8::1", False),
        (["198.51.100.7/32", "2001:db8::/32"], "198.51.100.7", True),
    ],
)
def test_source_cidrs_v4_and_v6(org, cidrs, ip, holds):
    rule = make_policy(org, "allow", conditions={"source_cidrs": cidrs})
    assert (decide(org, ip=ip).policy == rule) is holds


def test_a_deny_rule_for_a_network_also_catches_ipv4_mapped_addresses(org):
    make_policy(org, "allow", provider="stripe")
    make_policy(org, "deny", provider="stripe", conditions={"source_cidrs": ["203.0.113.0/24"]})
    assert decide(org, ip="::ffff:203.0.113.9").effect == "deny"
    assert decide(org, ip="198.51.100.1").effect == "allow"


BUSINESS_HOURS = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00", "tz": "Europe/Paris"}


@pytest.mark.parametrize(
    ("now", "holds"),
    [
        (datetime(2026, 11, 23, 8, 0, tzinfo=UTC), True),  # Monday 09:00 in Paris (UTC+1): start is inclusive
        (datetime(2026, 11, 23, 7, 59, tzinfo=UTC), False),  # Monday 08:59 in Paris
        (datetime(2026, 11, 23, 15, 59, tzinfo=UTC), True),  # Monday 16:59 in Paris
        (datetime(2026, 11, 23, 16, 0, tzinfo=UTC), False),  # Monday 17:00 in Paris: end is exclusive
        (datetime(2026, 11, 21, 12, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 7, 6, 7, 30, tzinfo=UTC), True),  # a summer Monday, 09:30 in Paris (UTC+2)
        (datetime(2026, 7, 6, 15, 30, tzinfo=UTC), False),  # 17:30 in Paris in summer
    ],
)
def test_time_window_in_a_time_zone(org, now, holds):
    rule = make_policy(org, "allow", conditions={"time_window": BUSINESS_HOURS})
    assert (decide(org, now=now).policy == rule) is holds


NIGHT_SHIFT = {"days": ["fri"], "start": "22:00", "end": "02:00", "tz": "America/New_York"}


@pytest.mark.parametrize(
    ("now", "holds"),
    [
        (datetime(2026, 11, 21, 3, 30, tzinfo=UTC), True),  # Friday 22:30 in New York (UTC-5)
        (datetime(2026, 11, 21, 6, 59, tzinfo=UTC), True),  # Saturday 01:59: still Friday's window
        (datetime(2026, 11, 21, 7, 0, tzinfo=UTC), False),  # Saturday 02:00: the window has ended
        (datetime(2026, 11, 21, 2, 59, tzinfo=UTC), False),  # Friday 21:59
        (datetime(2026, 11, 22, 4, 0, tzinfo=UTC), False),  # Saturday 23:00: Saturday is not listed
        (datetime(2026, 11, 20, 6, 0, tzinfo=UTC), False),  # Friday 01:00: that belongs to Thursday's window
    ],
)
def test_time_window_wrapping_midnight(org, now, holds):
    rule = make_policy(org, "allow", conditions={"time_window": NIGHT_SHIFT})
    assert (decide(org, now=now).policy == rule) is holds


def test_the_default_time_is_now(org):
    always = {"start": "00:00", "end": "23:59"}
    rule = make_policy(
        org,
        "allow",
        conditions={"time_window": {**always, "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "tz": "UTC"}},
    )
    assert decide(org).policy == rule


def test_all_conditions_must_hold(org):
    both = {"time_window": BUSINESS_HOURS, "source_cidrs": ["10.0.0.0/8"]}
    rule = make_policy(org, "allow", conditions=both)
    assert decide(org, ip="10.0.0.1", now=MONDAY_NOON).policy == rule
    assert decide(org, ip="10.0.0.1", now=datetime(2026, 11, 21, 12, 0, tzinfo=UTC)).policy is None
    assert decide(org, ip="192.0.2.1", now=MONDAY_NOON).policy is None


@pytest.mark.parametrize(
    "broken", [{"source_cidrs": "10.0.0.0/8"}, {"geo": ["FR"]}, {"time_window": {"start": 9}}, ["x"]]
)
def test_conditions_that_cannot_be_evaluated_resolve_restrictively(org, broken):
    """A hand-edited row must never widen access: a broken allow rule is skipped, a broken deny rule applies."""
    fallback = make_policy(org, "require_approval")
    broken_allow = make_policy(org, "allow", provider="stripe")
    Policy.objects.filter(pk=broken_allow.pk).update(conditions=broken)
    assert decide(org, ip="10.0.0.1").policy == fallback

    broken_deny = make_policy(org, "deny", provider="stripe", scope="charges:read")
    Policy.objects.filter(pk=broken_deny.pk).update(conditions=broken)
    assert decide(org, ip="10.0.0.1").policy == broken_deny


def test_candidates_are_read_in_batches_until_one_holds(org, django_assert_num_queries):
    """Rules whose conditions fail are skipped in precedence order, a batch per query."""
    elsewhere = {"source_cidrs": ["192.0.2.0/24"]}
    for n in range(engine.FIRST_BATCH + 5):
        make_policy(org, "deny", agent="invoice-bot", provider="stripe", scope="charges:read", conditions=elsewhere)
        make_policy(
            org,
            ["allow", "deny"][n % 2],
            provider="stripe",
            scope=f"charges:{'*' if n % 3 else 'read'}",
            conditions=elsewhere,
        )
    holding = make_policy(org, "allow", provider="stripe", conditions={"source_cidrs": ["10.0.0.0/8"]})
    make_policy(org, "deny", scope="refunds:*")

    with django_assert_num_queries(2):
        assert decide(org, ip="10.9.9.9").policy == holding
    with django_assert_num_queries(2):
        assert decide(org, ip="172.16.0.1").policy is None


def test_batches_walk_every_candidate_once_in_precedence_order(org):
    """The keyset continuation neither skips nor repeats a rule, whichever precedence level a batch ends in."""
    chooser = random.Random(7)
    for _ in range(engine.FIRST_BATCH + 2 * engine.NEXT_BATCH + 9):
        make_policy(
            org,
            chooser.choice(["allow", "require_approval", "deny"]),
            agent=chooser.choice(["", "invoice-bot"]),
            provider=chooser.choice(["", "stripe"]),
            scope=chooser.choice(["", "charges:*", "charges:refunds:*", "charges:refunds:write"]),
        )
    rules = engine.candidates(org, **REQUEST, scope="charges:refunds:write")
    assert list(engine._in_batches(rules)) == list(rules)
    assert len(list(rules)) == Policy.objects.count()


def test_a_holding_rule_after_a_full_batch_of_equally_specific_failing_ones(org, django_assert_num_queries):
    elsewhere = {"source_cidrs": ["192.0.2.0/24"]}
    for _ in range(engine.FIRST_BATCH):
        make_policy(org, "deny", provider="stripe", conditions=elsewhere)
    approval = make_policy(org, "require_approval", provider="stripe")
    make_policy(org, "allow", provider="stripe")
    with django_assert_num_queries(2):
        assert decide(org, ip="10.0.0.1").policy == approval


# Against a reference -----------------------------------------------------------------------------


def reference_decision(rules: list[Policy], request: dict, scope: str, ip: str) -> Policy | None:
    """The rules as DESIGN.md states them, by brute force in Python."""

    def matches(rule: Policy) -> bool:
        if any(getattr(rule, field) not in ("", request[field]) for field in ("agent", "provider", "environment")):
            return False
        if rule.scope and not scope_rules.matches(rule.scope, scope):
            return False
        cidrs = rule.conditions.get("source_cidrs")
        return cidrs is None or ipaddress.ip_address(ip) in ipaddress.ip_network(cidrs[0])

    def precedence(rule: Policy):
        fields = sum(1 for field in ("agent", "provider", "scope", "environment") if getattr(rule, field))
        return (-fields, -scope_rules.precision(rule.scope), -EFFECT_RANK[rule.effect], rule.pk)

    matching = sorted(filter(matches, rules), key=precedence)
    return matching[0] if matching else None


def test_the_engine_agrees_with_a_brute_force_reference(org):
    chooser = random.Random(20261123)
    values = {
        "agent": ["", "", "invoice-bot", "other-bot"],
        "provider": ["", "stripe", "stripe", "github"],
        "scope": ["", "charges:*", "charges:read", "charges:refunds:*", "charges:refunds:write", "refunds:*"],
        "environment": ["", "", "prod", "staging"],
        "effect": ["allow", "allow", "require_approval", "deny"],
        "conditions": [{}, {}, {}, {"source_cidrs": ["10.0.0.0/8"]}, {"source_cidrs": ["192.0.0.0/8"]}],
    }
    rules = [
        make_policy(org, **{field: chooser.choice(options) for field, options in values.items()}) for _ in range(150)
    ]
    for rule in rules:
        rule.refresh_from_db()

    checked = 0
    for scope in ("charges:read", "charges:refunds:write", "charges:refunds:read", "refunds:x", "payouts:read"):
        for agent in ("invoice-bot", "other-bot", "third-bot"):
            for environment in ("prod", "staging"):
                for ip in ("10.0.0.1", "192.0.2.1", "172.16.0.1"):
                    request = {"agent": agent, "provider": "stripe", "environment": environment}
                    expected = reference_decision(rules, request, scope, ip)
                    decision = evaluate(org, **request, scopes=[scope], ip=ip)
                    assert decision.policy == expected, (scope, agent, environment, ip)
                    assert decision.effect == (expected.effect if expected else "deny")
                    checked += expected is not None
    assert checked > 50  # most requests were decided by a rule, not by the default
