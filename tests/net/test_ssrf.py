"""SSRF guard: every known way to point keyward at an internal address, at save time and at connect time."""

import ipaddress
import threading

import pytest

from keyward.core.exceptions import InvalidRequest
from keyward.net import outbound
from keyward.net.errors import OutboundBlocked, OutboundError, ResponseTooLarge
from keyward.net.outbound import fetch_json, outbound_session
from keyward.net.ssrf import is_allowed_address, validate_outbound_url

pytestmark = pytest.mark.django_db

PUBLIC_IP = "93.184.216.34"  # only ever resolved to in these tests, never connected to


def refused(url, field="jwks_uri") -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate_outbound_url(url, field=field)
    assert list(caught.value.fields) == [field]
    assert caught.value.fields[field] == [caught.value.message]
    return caught.value


@pytest.fixture
def http_without_private(settings):
    """Dev mode's plain http, but no private destinations: isolates the address check."""
    settings.DEV_MODE = True
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False


# --- save time -------------------------------------------------------------------------------


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/jwks",
        "https://127.8.9.10/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[64:ff9b::7f00:1]/",  # NAT64-embedded 127.0.0.1
        "https://[2002:7f00:1::]/",  # 6to4-embedded 127.0.0.1
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://[fc00::1]/",
        "https://[fd12:3456::1]/",
    ],
)
def test_private_and_loopback_addresses_are_refused(url):
    error = refused(url)
    assert error.code == "url_destination_not_allowed"
    assert "private or loopback" in error.message


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:169.254.169.254]/",
        "https://[64:ff9b::a9fe:a9fe]/",  # NAT64-embedded metadata address
        "https://100.100.100.200/",
        "https://169.254.1.1/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
        "https://240.0.0.1/",
        "https://[ff02::1]/",
        "https://192.0.2.10/",
        "https://[2001:db8::1]/",
        "https://[::127.0.0.1]/",  # deprecated IPv4-compatible form
    ],
)
def test_metadata_link_local_multicast_and_reserved_addresses_are_refused(url):
    assert refused(url).code == "url_destination_not_allowed"


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0x7f.1/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://127.0.0.1./",
        "https://1.2.3.4.5/",
    ],
)
def test_numeric_ip_spellings_are_refused(url):
    error = refused(url)
    assert error.code == "invalid_url"
    assert "four decimal numbers" in error.message


@pytest.mark.usefixtures("http_without_private")
@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://017700000001/"])
def test_numeric_ip_spellings_are_refused_in_dev_mode_too(url):
    assert refused(url).code == "invalid_url"


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    "url",
    [
        "https://evil@127.0.0.1/",
        "https://user:pass@idp.example.com/",
        "https://idp.example.com@127.0.0.1/",
        "https://idp.example.com\\@127.0.0.1/",
        "https://127.0.0.1\\@idp.example.com/",
    ],
)
def test_userinfo_tricks_are_refused(url):
    assert refused(url).code == "invalid_url"


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://idp.example.com/jwks",
        "dict://127.0.0.1:11211/stats",
        "ldap://idp.example.com/",
        "http://idp.example.com/jwks",
    ],
)
def test_schemes_other_than_https_are_refused(url):
    error = refused(url)
    assert error.code == "url_scheme_not_allowed"
    assert error.message == "The URL must use https."


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    "url",
    [
        "",
        "/relative/jwks",
        "idp.example.com/jwks",
        "https:///jwks",
        "https://idp.example.com/jwks#fragment",
        "https://idp.example.com:0/",
        "https://idp.example.com:99999/",
        "https://idp .example.com/",
        "https://idp.example.com/\njwks",
        "https://ïdp.example.com/",
        "https://%31%32%37.0.0.1/",
        "https://[fe80::1%25eth0]/",
        "https://[::1/",
        "https://" + "a" * 2100 + ".example.com/",
    ],
)
def test_malformed_urls_are_refused(url):
    assert refused(url).code == "invalid_url"


@pytest.mark.usefixtures("strict")
def test_a_non_string_is_refused():
    assert refused(None).code == "invalid_url"


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize("url", ["https://localhost/", "https://LOCALHOST/jwks", "https://idp.localhost/"])
def test_localhost_names_are_refused_without_looking_them_up(url):
    assert refused(url).code == "url_destination_not_allowed"


@pytest.mark.usefixtures("strict")
def test_a_name_resolving_to_loopback_is_refused(fake_dns):
    fake_dns["internal.test"] = [["127.0.0.1"]]
    assert refused("https://internal.test/jwks").code == "url_destination_not_allowed"


@pytest.mark.usefixtures("strict")
def test_a_name_with_any_private_answer_is_refused(fake_dns):
    fake_dns["mixed.test"] = [[PUBLIC_IP, "10.0.0.5"]]
    assert refused("https://mixed.test/jwks").code == "url_destination_not_allowed"


@pytest.mark.usefixtures("strict")
def test_a_public_https_url_is_accepted_unchanged(fake_dns):
    fake_dns["idp.test"] = [[PUBLIC_IP, "2606:4700:4700::1111"]]
    url = "https://idp.test:8443/.well-known/jwks.json?tenant=a"
    assert validate_outbound_url(url, field="jwks_uri") == url


@pytest.mark.usefixtures("strict")
def test_a_name_that_does_not_resolve_yet_is_left_to_the_connect_time_check(fake_dns):
    assert validate_outbound_url("https://not-yet.test/jwks", field="jwks_uri") == "https://not-yet.test/jwks"


def test_dev_mode_allows_plain_http(settings, fake_dns):
    settings.DEV_MODE = True
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    fake_dns["idp.test"] = [[PUBLIC_IP]]
    assert validate_outbound_url("http://idp.test/jwks", field="jwks_uri") == "http://idp.test/jwks"
    assert refused("gopher://idp.test/").message == "The URL must use http or https."


def test_allow_private_permits_loopback_and_private_ranges(settings):
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = True
    for url in ("https://127.0.0.1/", "https://[::1]/", "https://10.0.0.1/", "https://localhost/"):
        assert validate_outbound_url(url, field="url") == url


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/",
        "https://[fd00:ec2::254]/",
        "https://100.100.100.200/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://2130706433/",
        "https://evil@127.0.0.1/",
    ],
)
def test_allow_private_never_opens_metadata_or_odd_forms(settings, url):
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = True
    assert refused(url).code in {"url_destination_not_allowed", "invalid_url"}


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("169.254.169.254", False),
        ("168.63.129.16", False),
    ],
)
def test_address_policy(address, allowed):
    assert is_allowed_address(ipaddress.ip_address(address), allow_private=False) is allowed


# --- connect time, against real servers on 127.0.0.1 --------------------------------------------


@pytest.mark.usefixtures("dev", "loopback_only")
def test_allow_private_reaches_a_real_local_server(local_server):
    server = local_server()
    server.respond("/doc", json_body={"ok": True})
    assert fetch_json(server.url("/doc")) == {"ok": True}
    assert server.count("/doc") == 1


@pytest.mark.usefixtures("http_without_private", "loopback_only")
def test_a_local_server_is_refused_at_connect_time_without_the_override(local_server):
    server = local_server()
    server.respond("/doc", json_body={"ok": True})
    with outbound_session() as session, pytest.raises(OutboundBlocked) as caught:
        session.get(server.url("/doc"))
    assert caught.value.code == "url_destination_not_allowed"
    assert server.count() == 0


@pytest.mark.usefixtures("http_without_private", "loopback_only")
def test_dns_rebinding_between_save_and_connect_is_refused(local_server, fake_dns):
    server = local_server()
    server.respond("/jwks", json_body={"keys": []})
    fake_dns["rebind.test"] = [[PUBLIC_IP], ["127.0.0.1"]]
    url = f"http://rebind.test:{server.port}/jwks"
    assert validate_outbound_url(url, field="jwks_uri") == url  # public when saved
    with pytest.raises(OutboundBlocked):
        fetch_json(url)  # loopback when connecting
    assert server.count() == 0


@pytest.mark.usefixtures("dev", "loopback_only")
def test_a_name_resolving_to_loopback_connects_only_with_the_override(settings, local_server, fake_dns):
    server = local_server()
    server.respond("/doc", json_body={"ok": True})
    fake_dns["internal.test"] = [["127.0.0.1"]]
    url = f"http://internal.test:{server.port}/doc"
    assert fetch_json(url) == {"ok": True}
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    with pytest.raises(OutboundBlocked):
        fetch_json(url)
    assert server.count() == 1


@pytest.mark.usefixtures("dev", "loopback_only")
@pytest.mark.parametrize(
    "url_template", ["http://2130706433:{port}/doc", "http://0x7f.1:{port}/doc", "http://127.1:{port}/doc"]
)
def test_numeric_ip_spellings_are_refused_at_connect_time_even_with_the_override(local_server, url_template):
    server = local_server()
    server.respond("/doc", json_body={"ok": True})
    with outbound_session() as session, pytest.raises(OutboundBlocked):
        session.get(url_template.format(port=server.port))
    assert server.count() == 0


@pytest.mark.usefixtures("dev", "loopback_only")
def test_userinfo_is_refused_at_connect_time(local_server):
    server = local_server()
    with outbound_session() as session, pytest.raises(OutboundBlocked):
        session.get(f"http://evil@127.0.0.1:{server.port}/")
    assert server.count() == 0


@pytest.mark.usefixtures("dev", "loopback_only")
@pytest.mark.parametrize(
    "template", ["file:///etc/passwd", "gopher://127.0.0.1:{port}/_GET", "ftp://127.0.0.1:{port}/"]
)
def test_non_http_schemes_are_refused_at_connect_time(local_server, template):
    server = local_server()
    with outbound_session() as session, pytest.raises(OutboundBlocked) as caught:
        session.get(template.format(port=server.port))
    assert caught.value.code == "url_scheme_not_allowed"
    assert server.count() == 0


@pytest.mark.usefixtures("loopback_only")
def test_plain_http_is_refused_at_connect_time_outside_dev_mode(settings, local_server):
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = True
    server = local_server()
    with pytest.raises(OutboundBlocked) as caught:
        fetch_json(server.url("/doc"))
    assert caught.value.code == "url_scheme_not_allowed"
    assert server.count() == 0


@pytest.mark.usefixtures("dev", "loopback_only")
def test_redirects_are_never_followed(local_server):
    origin, target = local_server(), local_server()
    target.respond("/secret", json_body={"secret": True})
    origin.respond("/jwks", status=302, headers={"Location": target.url("/secret")})
    with outbound_session() as session:
        response = session.get(origin.url("/jwks"), allow_redirects=True)
    assert response.status_code == 302
    with pytest.raises(OutboundError) as caught:
        fetch_json(origin.url("/jwks"))
    assert caught.value.code == "redirect_not_followed"
    assert origin.count("/jwks") == 2
    assert target.count() == 0


@pytest.mark.usefixtures("dev", "loopback_only")
@pytest.mark.parametrize(
    "location", ["http://169.254.169.254/latest/meta-data/", "http://[::1]:1/", "file:///etc/passwd"]
)
def test_a_redirect_to_a_private_address_goes_nowhere(local_server, location):
    origin = local_server()
    origin.respond("/jwks", status=301, headers={"Location": location})
    with pytest.raises(OutboundError) as caught:
        fetch_json(origin.url("/jwks"))
    assert caught.value.code == "redirect_not_followed"


@pytest.mark.usefixtures("dev", "loopback_only")
def test_a_redirect_body_is_capped_too(local_server):
    origin = local_server()
    origin.respond("/jwks", status=302, headers={"Location": "/elsewhere"}, body=b"z" * 20_000, content_length=False)
    with pytest.raises(ResponseTooLarge):
        fetch_json(origin.url("/jwks"), max_response_bytes=10_000)


@pytest.mark.usefixtures("dev", "loopback_only")
def test_proxy_environment_variables_are_ignored(local_server, monkeypatch):
    target, proxy = local_server(), local_server()
    target.respond("/doc", json_body={"ok": True})
    proxy.respond("/doc", json_body={"proxied": True})
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy.url("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert fetch_json(target.url("/doc")) == {"ok": True}
    assert proxy.count() == 0
    with outbound_session() as session, pytest.raises(OutboundBlocked):
        session.get(target.url("/doc"), proxies={"http": proxy.url("/")})
    assert proxy.count() == 0


@pytest.mark.usefixtures("dev", "loopback_only")
@pytest.mark.parametrize("content_length", [True, False])
def test_responses_are_capped(local_server, content_length):
    server = local_server()
    server.respond("/big", body=b"x" * (2 * 1024 * 1024), content_length=content_length)
    with outbound_session() as session, pytest.raises(ResponseTooLarge):
        session.get(server.url("/big"))
    with pytest.raises(OutboundError) as caught:
        fetch_json(server.url("/big"), max_response_bytes=1000)
    assert caught.value.code == "response_too_large"


@pytest.mark.usefixtures("dev", "loopback_only")
def test_a_response_within_the_cap_arrives_whole(local_server):
    server = local_server()
    server.respond("/doc", body=b"y" * 5000, content_length=False)
    with outbound_session(max_response_bytes=5000) as session:
        assert session.get(server.url("/doc")).content == b"y" * 5000


@pytest.mark.usefixtures("dev", "loopback_only")
def test_a_server_that_never_answers_times_out(local_server, monkeypatch):
    monkeypatch.setattr(outbound, "READ_TIMEOUT", 0.2)
    server = local_server()
    release = threading.Event()
    server.respond("/slow", json_body={}, hold=release)
    try:
        with pytest.raises(OutboundError) as caught:
            fetch_json(server.url("/slow"))
    finally:
        release.set()
    assert caught.value.code == "timeout"


@pytest.mark.usefixtures("dev", "loopback_only")
@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(500, b"{}", "http_status"), (404, b"{}", "http_status"), (200, b"<html>", "invalid_json")],
)
def test_unusable_answers_are_outbound_errors(local_server, status, body, code):
    server = local_server()
    server.respond("/doc", body=body, status=status)
    with pytest.raises(OutboundError) as caught:
        fetch_json(server.url("/doc"))
    assert caught.value.code == code


@pytest.mark.usefixtures("dev", "loopback_only")
def test_a_server_that_is_down_is_unreachable(local_server, fake_dns):
    server = local_server()
    server.stop()
    with pytest.raises(OutboundError) as caught:
        fetch_json(server.url("/doc"))
    assert caught.value.code == "unreachable"
    with pytest.raises(OutboundError) as caught:
        fetch_json("http://nowhere.test/doc")
    assert caught.value.code == "unreachable"
