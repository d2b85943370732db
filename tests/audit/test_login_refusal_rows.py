"""Refused sign-ins in the audit log: bounded while throttled, and never the identifier as typed."""

import logging

import pytest
from django.test import override_settings

from keyward.accounts import services
from keyward.audit.chain import canonical_bytes, canonical_fields
from keyward.audit.models import AuditEvent
from keyward.audit.services import verify_chain
from tests.factories import make_account

pytestmark = pytest.mark.django_db

WRONG = "not the password at all"


def login(api, email, password=WRONG, **request_extra):
    return api.post("/auth/login", {"email": email, "password": password}, format="json", **request_extra)


def failed_rows(**filters):
    return AuditEvent.objects.filter(event_type="account.login_failed", **filters)


def test_a_throttled_flood_writes_one_rate_limited_row_per_window(api, caplog):
    """60 cheap refused attempts must not append 60 rows to the victim org's chain (nor take its lock 60 times)."""
    victim = make_account(email="victim@example.com")

    with caplog.at_level(logging.INFO, logger="keyward.accounts.services"):
        statuses = [login(api, "victim@example.com").status_code for _ in range(60)]

    assert (statuses.count(401), statuses.count(429)) == (5, 55)
    assert failed_rows(org=victim.org, reason_code="invalid_credentials").count() == 5
    limited = failed_rows(org=victim.org, reason_code="rate_limited")
    assert limited.count() == 1
    assert (limited.get().outcome, limited.get().detail) == ("denied", {"cause": "too_many_failures"})
    assert AuditEvent.objects.filter(org=victim.org).count() == 6
    logged = [record.getMessage() for record in caplog.records if "only the first is audited" in record.message]
    assert len(logged) == 54
    assert "refusal 55 this window" in logged[-1]
    assert all("victim@example.com" not in line for line in logged)
    assert verify_chain(victim.org).ok


@override_settings(KEYWARD_LOGIN_FAILURES_PER_IP=3)
def test_each_throttled_key_gets_its_own_single_row(api):
    """Once the address is over its limit, spraying new accounts adds one row for the address, not one each."""
    for n in range(3):
        login(api, f"spray{n}@example.com", REMOTE_ADDR="192.0.2.7")
    for n in range(3, 20):
        assert login(api, f"spray{n}@example.com", REMOTE_ADDR="192.0.2.7").status_code == 429

    assert failed_rows(reason_code="invalid_credentials").count() == 3
    assert failed_rows(reason_code="rate_limited").count() == 1


def test_checked_failures_are_each_audited(api):
    make_account(email="bob@example.com")
    for _ in range(4):
        login(api, "bob@example.com")
    assert failed_rows(reason_code="invalid_credentials").count() == 4


@pytest.mark.parametrize(
    "typed", ["correct horse battery staple", "Tr0ub4dor&3@home.example", "hunter2", "ghost@example.com"]
)
def test_an_unknown_identifier_is_never_stored_as_typed(api, caplog, typed):
    """What was typed as the email may be a password pasted into the wrong field."""
    with caplog.at_level(logging.INFO):
        for _ in range(7):  # through the lockout, so the logged refusals are covered too
            login(api, typed)

    rows = list(failed_rows())
    everything = b"".join(canonical_bytes(canonical_fields(row)) for row in rows)
    assert typed.lower().encode() not in everything.lower()
    assert typed.split("@")[0].lower() not in caplog.text.lower()
    assert {row.actor_name for row in rows} == {services.unknown_identifier_marker(typed.lower())}


def test_the_marker_keeps_a_valid_emails_domain_and_correlates_repeats():
    marker = services.unknown_identifier_marker("ghost@example.com")
    assert marker.startswith("unknown:")
    assert marker.endswith("@example.com")
    assert "ghost" not in marker
    assert services.unknown_identifier_marker("ghost@example.com") == marker
    assert services.unknown_identifier_marker("other@example.com") != marker
    assert "@" not in services.unknown_identifier_marker("not an email at all")


def test_the_marker_is_keyed_by_the_secret_key(settings):
    """An unkeyed hash of a short password could be brute-forced from the row; a keyed one cannot."""
    before = services.unknown_identifier_marker("hunter2")
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    assert services.unknown_identifier_marker("hunter2") != before


def test_a_known_account_is_still_named_by_its_email(api):
    account = make_account(email="bob@example.com")
    login(api, "BOB@example.com")
    row = failed_rows().get()
    assert (row.actor_name, row.actor_id) == ("bob@example.com", str(account.pk))
