"""The attack catalogue runs against the broker tests' small world (an org, its dev IdP, an agent, a provider)."""

from tests.broker.conftest import _fresh_key_caches, world  # noqa: F401 - fixtures shared with tests/broker
