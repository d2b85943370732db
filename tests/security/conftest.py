"""Fixtures for the attack catalogue: the broker's world, two populated orgs, local servers, stub providers."""

import pytest

from tests import local_http
from tests.broker.conftest import _fresh_key_caches, world
from tests.broker.minters.conftest import _fresh_breakers, connection_attempts, stubs
from tests.security.tenants import Tenant, populate

__all__ = ["_fresh_breakers", "_fresh_key_caches", "connection_attempts", "stubs", "world"]

fake_dns = local_http.fake_dns
local_server = local_http.local_server
loopback_only = local_http.loopback_only


@pytest.fixture
def tenants(callers, django_capture_on_commit_callbacks, settings, tmp_path) -> tuple[Tenant, Tenant]:
    """Org A (the matrix org, as its owner) and org B (the other org), each with one object of every kind."""
    settings.KEYWARD_EXPORT_DIR = tmp_path / "exports"
    own = populate(callers.org, callers.owner, "acme", django_capture_on_commit_callbacks)
    other = populate(callers.other_org.org, callers.other_org, "globex", django_capture_on_commit_callbacks)
    return own, other


@pytest.fixture(autouse=True)
def _attacks_from_one_address_are_not_cut_short(settings):
    """The catalogue sends dozens of refused tokens from 127.0.0.1 per test, and wants each one's own
    refusal; the budget of unproven requests per address has its own tests (test_rate_limits.py)."""
    settings.KEYWARD_BROKER_UNPROVEN_BURST = 10_000
