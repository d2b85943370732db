"""The total time budget of an outbound request: a server that drips its answer cannot hold it open.

No test measures time: each proves that keyward hung up before a dripping server had sent its
whole answer, which a client without the budget never does.
"""

import pytest
import requests

from keyward.net import outbound
from keyward.net.errors import OutboundError
from keyward.net.outbound import fetch_json, outbound_session

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dev", "loopback_only")]

DRIP_INTERVAL = 0.2
PATCHED_TOTAL = 1.0


def test_a_body_dripped_one_byte_at_a_time_is_cut_off_at_the_total_budget(drip_server, monkeypatch):
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT", PATCHED_TOTAL)
    server = drip_server(body_bytes=40, interval=DRIP_INTERVAL)  # each byte well inside the read timeout

    with pytest.raises(OutboundError) as caught:
        fetch_json(server.url("/jwks"))

    assert caught.value.code == "timeout"
    assert server.wait_until_done()
    assert not server.sent_everything


def test_headers_dripped_one_byte_at_a_time_are_cut_off_too(drip_server, monkeypatch):
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT", PATCHED_TOTAL)
    server = drip_server(body_bytes=10, interval=DRIP_INTERVAL, drip_headers=True)

    with pytest.raises(OutboundError) as caught:
        fetch_json(server.url("/jwks"))

    assert caught.value.code == "timeout"
    assert server.wait_until_done()
    assert not server.sent_everything


def test_a_session_request_is_cut_off_too(drip_server, monkeypatch):
    """What webhook callers use: the budget ends in a requests.Timeout, like any other timeout."""
    monkeypatch.setattr(outbound, "TOTAL_TIMEOUT", PATCHED_TOTAL)
    server = drip_server(body_bytes=40, interval=DRIP_INTERVAL)
    with outbound_session() as session, pytest.raises(requests.Timeout):
        session.get(server.url("/hook"))
    assert server.wait_until_done()
    assert not server.sent_everything
    assert server.wait_until_done()
    assert not server.sent_everything


def test_an_answer_that_arrives_within_the_budget_is_read_whole(drip_server):
    server = drip_server(body_bytes=4, interval=0.01)
    assert fetch_json(server.url("/doc"), total_timeout=5.0) == "aa"
    assert server.sent_everything


def test_the_budget_is_per_caller(drip_server):
    """A caller's own budget (here the request path's) applies, whatever the module default is."""
    server = drip_server(body_bytes=40, interval=DRIP_INTERVAL)
    with outbound_session(total_timeout=PATCHED_TOTAL) as session, pytest.raises(requests.Timeout):
        session.get(server.url("/hook"))
    assert server.wait_until_done()
    assert not server.sent_everything


@pytest.fixture
def connect_attempts(monkeypatch) -> list[str]:
    """The addresses keyward tries to connect to, in order (on top of the loopback-only safety net)."""
    attempts: list[str] = []
    create_connection = outbound.urllib3_connection.create_connection

    def recording(address, *args, **kwargs):
        attempts.append(address[0])
        return create_connection(address, *args, **kwargs)

    monkeypatch.setattr(outbound.urllib3_connection, "create_connection", recording)
    return attempts


def test_a_request_path_fetch_tries_at_most_two_addresses(local_server, fake_dns, connect_attempts):
    server = local_server()  # listens on 127.0.0.1 only: 127.0.0.2 and 127.0.0.3 refuse the connection
    server.respond("/doc", json_body={"ok": True})
    fake_dns["many.test"] = [["127.0.0.2", "127.0.0.3", "127.0.0.1"]]
    url = f"http://many.test:{server.port}/doc"

    with pytest.raises(OutboundError) as caught:
        fetch_json(url, max_addresses=outbound.REQUEST_PATH_MAX_ADDRESSES)

    assert caught.value.code == "unreachable"
    assert connect_attempts == ["127.0.0.2", "127.0.0.3"]
    assert server.count() == 0
    assert fetch_json(url) == {"ok": True}  # background callers try every address
    assert connect_attempts[2:] == ["127.0.0.2", "127.0.0.3", "127.0.0.1"]
