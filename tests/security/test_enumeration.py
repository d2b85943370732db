"""Enumeration by status, body and timing: what exists elsewhere must look like what exists nowhere.

Timing is compared by the work done, never by the clock: password-hash computations for sign-in,
database queries for lookups. (Admin routes: tests/security/test_tenancy.py compares another
org's ids with ids that exist nowhere on every route, bodies and query counts alike.)
"""

import json
from contextlib import contextmanager
from unittest import mock

import argon2
import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from keyward.accounts.models import Role
from keyward.idp import services as idp_services
from keyward.idp.models import IdpEmailDomain
from tests.broker.conftest import make_agent, make_provider
from tests.factories import PASSWORD, make_account, make_org
from tests.security.expect import Baseline, refused

pytestmark = pytest.mark.django_db

WRONG = "not the password at all, sorry"


class CheapArgon2PasswordHasher(Argon2PasswordHasher):
    """Production's hasher with tiny costs: the same code path, counted rather than timed."""

    time_cost = 1
    memory_cost = 64
    parallelism = 1


@contextmanager
def counting_hash_work():
    """Counts argon2 computations: a hash (set_password, the dummy check) or a verification."""
    counts = {"argon2": 0}
    real_hash, real_verify = argon2.low_level.hash_secret, argon2._password_hasher.verify_secret

    def counted(function):
        def wrapper(*args, **kwargs):
            counts["argon2"] += 1
            return function(*args, **kwargs)

        return wrapper

    with (
        mock.patch.object(argon2.low_level, "hash_secret", counted(real_hash)),
        mock.patch.object(argon2._password_hasher, "verify_secret", counted(real_verify)),
    ):
        yield counts


def without_request_id(response) -> tuple[int, str]:
    body = {key: value for key, value in response.json().items() if key != "request_id"}
    return response.status_code, json.dumps(body, sort_keys=True)


def sign_in(email: str, password: str):
    with counting_hash_work() as work:
        response = APIClient().post("/auth/login", {"email": email, "password": password}, format="json")
    return response, work["argon2"]


@pytest.fixture
def argon2_hashing(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CheapArgon2PasswordHasher"]


@pytest.mark.usefixtures("argon2_hashing")
@pytest.mark.parametrize("who", ["wrong-password", "two-factor-wrong-password", "deactivated-right-password"])
def test_a_known_account_signs_in_like_an_unknown_email(who):
    account = make_account(make_org("Known Inc"), Role.OWNER, email="known@example.com")
    password = WRONG
    if who == "two-factor-wrong-password":
        TOTPDevice.objects.create(user=account, name="default", confirmed=True)
    if who == "deactivated-right-password":
        account.is_active = False
        account.save()
        password = PASSWORD

    known, known_work = sign_in("known@example.com", password)
    unknown, unknown_work = sign_in("nobody@example.com", password)

    assert known.status_code == 401
    assert without_request_id(known) == without_request_id(unknown)
    assert known_work == unknown_work == 1, (known_work, unknown_work)
    assert set(known.headers.keys()) - {"X-Request-Id"} == set(unknown.headers.keys()) - {"X-Request-Id"}


def test_tenant_lookup_reveals_no_accounts_and_no_unverified_claims(api):
    """Home-realm discovery answers by verified domain only: accounts and pending claims are invisible."""
    org = make_org("Acme")
    make_account(org, Role.OWNER, email="alice@member.example")
    connector = idp_services.create_connector(
        org=org,
        name="corp",
        issuer="https://corp.idp.example.com",
        audience="keyward",
        jwks_uri="https://corp.idp.example.com/jwks",
        allowed_algorithms=["RS256"],
        email_domains=["pending.example", "verified.example"],
    )
    IdpEmailDomain.objects.filter(connector=connector, domain="verified.example").update(verified_at=timezone.now())
    make_account(org, Role.VIEWER, email="bob@verified.example")

    def lookup(email: str):
        with CaptureQueriesContext(connection) as queries:
            response = api.get("/auth/tenant", {"email": email})
        return response, len(queries)

    pairs = [
        ("alice@member.example", "alice@nothing.example"),  # an account, no claimed domain vs nothing at all
        ("ceo@pending.example", "ceo@nothing.example"),  # a claim not yet verified vs nothing
        ("bob@verified.example", "nobody@verified.example"),  # an account vs none, on a verified domain
    ]
    for exists, absent in pairs:
        (found, found_queries), (missing, missing_queries) = lookup(exists), lookup(absent)
        assert without_request_id(found) == without_request_id(missing), (exists, absent)
        assert found_queries == missing_queries, (exists, absent)
    assert api.get("/auth/tenant", {"email": "x@verified.example"}).status_code == 200


def _asked_for(world, name: str, *, provider: str = "stripe"):
    with CaptureQueriesContext(connection) as queries:
        response = world.ask({"provider": provider, "scope": "charges:read"}, agent=name)
    return response, len(queries)


def test_an_agent_that_exists_only_in_another_org_is_unknown_like_one_that_exists_nowhere(world):
    world.ask()  # warm the signing and IdP keys, so both probes below do the same work
    before = Baseline.take()
    nowhere, nowhere_queries = _asked_for(world, "payroll-bot")
    refused(nowhere, 404, "unknown_agent", before=before, chain=world.org)
    make_agent(make_org("Globex"), "payroll-bot")
    before = Baseline.take()

    elsewhere, elsewhere_queries = _asked_for(world, "payroll-bot")

    refused(elsewhere, 404, "unknown_agent", before=before, chain=world.org)
    assert without_request_id(elsewhere) == without_request_id(nowhere)
    assert elsewhere_queries == nowhere_queries


def test_a_provider_that_exists_only_in_another_org_is_unknown_like_one_that_exists_nowhere(world):
    world.ask()
    world.agent.grants = [{"provider": "payroll", "scopes": ["*"], "environments": ["prod"]}]
    world.agent.save()
    before = Baseline.take()
    nowhere, nowhere_queries = _asked_for(world, world.agent.name, provider="payroll")
    refused(nowhere, 404, "unknown_provider", before=before, chain=world.org)
    make_provider(make_org("Globex"), "payroll")
    before = Baseline.take()

    elsewhere, elsewhere_queries = _asked_for(world, world.agent.name, provider="payroll")

    refused(elsewhere, 404, "unknown_provider", before=before, chain=world.org)
    assert without_request_id(elsewhere) == without_request_id(nowhere)
    assert elsewhere_queries == nowhere_queries
