import pytest

from tests import local_http
from tests.net import drip

drip_server = drip.drip_server
fake_dns = local_http.fake_dns
local_server = local_http.local_server
loopback_only = local_http.loopback_only


@pytest.fixture
def strict(settings):
    """Production rules: https only, no private or loopback destinations."""
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False


@pytest.fixture
def dev(settings):
    """Dev-mode rules, which the tests' local http servers need: http and loopback allowed."""
    settings.DEV_MODE = True
    settings.KEYWARD_ALLOW_PRIVATE_URLS = True
