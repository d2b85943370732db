import os
import time
from unittest import mock

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from rest_framework.test import APIClient

from keyward.core import queueing, ratelimit
from tests.permissions import make_callers

SERVICES_PASS = os.environ.get("KEYWARD_TEST_SERVICES") == "1"
# Fixtures for real processes (private redis-server, Celery workers, gunicorn), for any test to use.
pytest_plugins = ["tests.processes"]


def pytest_collection_modifyitems(config, items):
    """Outside the services pass, service-bound tests skip; inside it they must run (checked per test)."""
    if SERVICES_PASS:
        return
    for item in items:
        for marker in ("postgres", "redis"):
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"needs {marker}: runs in the services pass (.ci/run)"))


@pytest.fixture(autouse=True)
def _require_services(request):
    """In the services pass a missing PostgreSQL or Redis is a failure, never a silent skip."""
    if not SERVICES_PASS:
        return
    if request.node.get_closest_marker("postgres"):
        assert connection.vendor == "postgresql", "services pass without PostgreSQL: set KEYWARD_DATABASE_URL"
    if request.node.get_closest_marker("redis"):
        assert settings.REDIS_URL, "services pass without Redis: set KEYWARD_REDIS_URL"


@pytest.fixture(autouse=True)
def _queueing_not_paused():
    """A broker refusal pauses queueing for the whole process; one test's outage must not leak."""
    queueing.resume()


def delete_own_cache_keys() -> None:
    """Empty the cache of what this test run wrote, and nothing else.

    On Redis (the services pass, a server others share) that is the keys under this run's own
    prefix (tests/settings.py), found with SCAN; the per-process memory cache holds only ours.
    """
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        backend.clear()
        return
    client = backend._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{backend.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Per-process buckets and a Redis pause must not leak from one test into the next."""
    ratelimit.reset_local()
    yield
    ratelimit.reset_local()


@pytest.fixture
def still_window():
    """Hold the clock that picks refusal-counting windows (keyward.core.ratelimit) still, so a test that
    counts a flood never straddles two windows; a test moves it on with its own, inner patch."""
    with mock.patch("keyward.core.ratelimit.time.time", return_value=time.time()):
        yield


@pytest.fixture(autouse=True)
def _clean_cache():
    delete_own_cache_keys()
    yield
    delete_own_cache_keys()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def callers(db):
    return make_callers()
