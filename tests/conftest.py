import os

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from keyward.core import queueing
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


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def callers(db):
    return make_callers()
