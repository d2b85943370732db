"""An outage of the database or Redis is a documented 503 with a code and `Retry-After`, never a 500.

The failures are real where the test can make them so: the cache points at a 127.0.0.1 port that
refuses connections, and on PostgreSQL the test's own backend is terminated. On SQLite a dropped
connection is played by `connection.execute_wrapper`: every query of the block raises what psycopg
raises when the server goes away, at the place the query runs.
"""

import socket
from collections.abc import Iterator

import pytest
import redis
from django.db import InterfaceError, OperationalError, connection
from django.test import Client, override_settings

from keyward.accounts.models import Account
from keyward.audit.models import AuditEvent
from keyward.idp.models import IdpConnector
from tests.outages import DROPPED, assert_unavailable, database_drops, logged_traceback, terminate_backends

pytestmark = pytest.mark.django_db

SIGNUP = {"org_name": "Outage Org", "email": "new-owner@example.com", "password": "a long enough passphrase"}


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A 127.0.0.1 port that is bound but never listens: every connection to it is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def cache_down(settings, refusing_port) -> None:
    """The shared cache is a Redis that is not there."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{refusing_port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.fixture
def cache_hangs(settings) -> Iterator[None]:
    """The shared cache accepts connections and never answers: every command times out."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody ever reads or writes
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3},
            }
        }
        yield


@pytest.mark.parametrize("dropped", sorted(DROPPED))
def test_a_dropped_database_connection_during_authentication_is_503(callers, caplog, dropped):
    client = callers.client("admin")
    with database_drops(DROPPED[dropped]):
        response = client.get("/v1/agents")
    assert_unavailable(response, "database_unavailable")
    assert logged_traceback(caplog, type(DROPPED[dropped]))


def test_signup_with_the_cache_down_is_503_and_creates_nothing(api, cache_down, caplog):
    response = api.post("/auth/signup", SIGNUP, format="json")
    assert_unavailable(response, "cache_unavailable")
    assert not Account.objects.filter(email=SIGNUP["email"]).exists()
    assert logged_traceback(caplog, redis.exceptions.ConnectionError)


def test_tenant_lookup_with_the_cache_down_is_503(api, cache_down):
    assert_unavailable(api.get("/auth/tenant", {"email": "someone@example.com"}), "cache_unavailable")


def test_an_idp_write_with_the_cache_down_is_503_and_changes_nothing(callers, cache_down):
    before = AuditEvent.objects.count()
    response = callers.client("admin").post("/v1/idps", {"name": "corp"}, format="json")
    assert_unavailable(response, "cache_unavailable")
    assert not IdpConnector.objects.exists()
    assert AuditEvent.objects.count() == before


def test_a_cache_that_times_out_is_503_too(api, cache_hangs, caplog):
    assert_unavailable(api.get("/auth/tenant", {"email": "someone@example.com"}), "cache_unavailable")
    assert logged_traceback(caplog, redis.exceptions.TimeoutError)


def test_reads_that_need_no_cache_still_work_with_the_cache_down(callers, cache_down):
    assert callers.client("admin").get("/v1/idps").status_code == 200


@override_settings(ROOT_URLCONF="tests.core.urls_boom", DEBUG=False)
@pytest.mark.parametrize("dropped", sorted(DROPPED))
def test_a_plain_django_view_losing_the_database_is_503_not_500(caplog, dropped):
    """Outside DRF the last net is handler500, which Django calls while the exception is being handled."""
    with database_drops(DROPPED[dropped]):
        response = Client(raise_request_exception=False).get("/plain-db")
    assert_unavailable(response, "database_unavailable")
    assert logged_traceback(caplog, type(DROPPED[dropped]))


@override_settings(ROOT_URLCONF="tests.core.urls_boom", DEBUG=False)
def test_a_plain_django_view_losing_the_cache_is_503_not_500(cache_down, caplog):
    response = Client(raise_request_exception=False).get("/plain-cache")
    assert_unavailable(response, "cache_unavailable")
    assert logged_traceback(caplog, redis.exceptions.ConnectionError)


@override_settings(ROOT_URLCONF="tests.core.urls_boom", DEBUG=False)
def test_a_middleware_losing_the_cache_is_503_not_500(settings, cache_down):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.core.urls_boom.CacheReadingMiddleware"]
    assert_unavailable(Client(raise_request_exception=False).get("/healthz"), "cache_unavailable")


@override_settings(ROOT_URLCONF="tests.core.urls_boom", DEBUG=False)
def test_any_other_crash_is_still_a_500():
    response = Client(raise_request_exception=False).get("/boom")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "Retry-After" not in response


def test_readyz_reports_a_database_that_does_not_answer(client):
    with database_drops(DROPPED["operational"]):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "down"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_terminated_postgresql_connection_is_503_then_recovered(callers, caplog):
    client = callers.client("admin")
    connection.ensure_connection()
    terminate_backends(only_pid=connection.connection.info.backend_pid)

    response = client.get("/v1/agents")

    assert_unavailable(response, "database_unavailable")
    assert logged_traceback(caplog, (OperationalError, InterfaceError))
    # The test client keeps Django from closing connections between requests; a server closes
    # the broken one at the end of the request (and health-checks it before the next), as here:
    connection.close_if_unusable_or_obsolete()
    assert client.get("/v1/agents").status_code == 200
