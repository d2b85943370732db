"""Tests that only mean something against the real services; the services pass of .ci/run runs them."""

import threading
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections

from keyward.accounts import services
from keyward.accounts.models import Account, Role
from keyward.core.exceptions import Conflict
from tests.conftest import delete_own_cache_keys
from tests.factories import make_account, make_org


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_services_pass_really_uses_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


@pytest.mark.redis
def test_the_services_pass_really_uses_redis():
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    cache.set("probe", "value", 10)
    client = cache._cache.get_client("probe")
    assert client.ping() is True
    assert cache.get("probe") == "value"


@pytest.mark.redis
def test_the_suite_deletes_only_the_cache_keys_it_wrote():
    """The services pass shares a Redis db with whoever else uses it: cleaning up is never a FLUSHDB."""
    client = cache._cache.get_client(write=True)
    theirs = f"someone-else:{uuid.uuid4().hex}"
    client.set(theirs, "keep me", ex=60)
    cache.set("ours", "value", 60)
    try:
        delete_own_cache_keys()
        assert cache.get("ours") is None
        assert client.get(theirs) == b"keep me"
    finally:
        client.delete(theirs)


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_checks_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    """The org row lock serialises owner-count checks, so the last-owner rule holds under races."""
    org = make_org()
    first, second = make_account(org, Role.OWNER), make_account(org, Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(target: Account) -> None:
        barrier.wait(timeout=10)
        try:
            services.change_role(org=org, target=target, role=Role.ADMIN)
            outcomes.append("ok")
        except Conflict as exc:
            outcomes.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=demote, args=(account,)) for account in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["last_owner", "ok"]
    assert Account.objects.filter(org=org, role=Role.OWNER).count() == 1
