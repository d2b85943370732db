"""Fixtures for the attack catalogue: the broker's world, local servers, stub providers, fresh caches."""

from tests import local_http
from tests.broker.conftest import _fresh_key_caches, world
from tests.broker.minters.conftest import _fresh_breakers, stubs

__all__ = ["_fresh_breakers", "_fresh_key_caches", "stubs", "world"]

fake_dns = local_http.fake_dns
local_server = local_http.local_server
loopback_only = local_http.loopback_only
