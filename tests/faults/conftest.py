"""Fault tests: keyward's real processes while PostgreSQL or Redis fail under them (services pass)."""

from tests.broker.conftest import _fresh_key_caches  # noqa: F401 - each test starts with fresh key caches
from tests.siem.conftest import receivers  # noqa: F401 - SIEM receivers on 127.0.0.1
