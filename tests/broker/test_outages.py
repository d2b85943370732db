"""The broker during an outage: a 503 with a code and `Retry-After`, never a 500, never a credential."""

import pytest

from broker.models import IssuedCredential
from tests.outages import DROPPED, assert_unavailable, database_drops, logged_traceback

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("dropped", sorted(DROPPED))
def test_a_dropped_database_connection_while_verifying_a_user_token_is_503(world, caplog, dropped):
    token = world.user_token()
    with database_drops(DROPPED[dropped]):
        response = world.ask(token=token)
    assert_unavailable(response, "database_unavailable")
    assert logged_traceback(caplog, type(DROPPED[dropped]))
    assert not IssuedCredential.objects.exists()


def test_an_audit_outage_asks_the_client_to_retry_too(world):
    token = world.user_token()
    with database_drops(DROPPED["operational"], only='INSERT INTO "audit_auditevent"'):
        response = world.ask(token=token)
    assert_unavailable(response, "audit_unavailable")
    assert not IssuedCredential.objects.exists()
