"""The client address comes from untrusted headers: only a parsed address may come out."""

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from keyward.accounts.models import SessionToken
from keyward.audit.models import AuditEvent
from keyward.core.net import address_bucket, client_ip, parse_address
from tests.factories import PASSWORD, make_account

PROXY = "10.0.0.2"


def request_with(forwarded: str | None = None, remote: str = PROXY):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:51234", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("fe80::1%eth0", "fe80::1"),
        ("  198.51.100.4 ", "198.51.100.4"),
        ("spoofed, 198.51.100.4", "198.51.100.4"),
    ],
)
def test_a_forwarded_address_is_parsed(settings, forwarded, expected):
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 1
    assert client_ip(request_with(forwarded)) == expected


@pytest.mark.parametrize(
    "forwarded", ["unknown", "", "203.0.113.9:99999999", "999.1.1.1", "2001:db8::g", "[::1", "a" * 500, "\x00"]
)
def test_a_forwarded_value_that_is_no_address_falls_back_to_the_peer(settings, forwarded):
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 1
    assert client_ip(request_with(forwarded)) == PROXY


def test_no_parseable_address_at_all_is_empty(settings):
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 1
    assert client_ip(request_with("unknown", remote="unix:/run/gunicorn.sock")) == ""


def test_the_header_is_ignored_without_trusted_hops(settings):
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 0
    assert client_ip(request_with("203.0.113.9")) == PROXY


def test_two_hops_take_the_second_address_from_the_right(settings):
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 2
    assert client_ip(request_with("spoofed, 203.0.113.9:4711, 10.0.0.9")) == "203.0.113.9"


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:ffff", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
    ],
)
def test_rate_limit_buckets(address, bucket):
    assert address_bucket(address) == bucket


def test_parse_address_rejects_text():
    assert parse_address("unknown") == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("forwarded", "stored"),
    [("203.0.113.9:51234", "203.0.113.9"), ("unknown", PROXY), ("[2001:db8::1]:443", "2001:db8::1")],
)
def test_sign_in_stores_the_parsed_address(api, settings, forwarded, stored):
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 1
    account = make_account()
    response = api.post(
        "/auth/login",
        {"email": account.email, "password": PASSWORD},
        format="json",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    assert response.status_code == 200
    assert SessionToken.objects.get(account=account).created_ip == stored
    assert AuditEvent.objects.get(event_type="account.login").ip == stored


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("forwarded", ["203.0.113.9:51234", "unknown", "[2001:db8::1]:443"])
def test_sign_in_with_a_port_or_junk_forwarded_is_no_500_on_postgresql(settings, forwarded):
    """SessionToken.created_ip is an `inet` column on PostgreSQL: an unparsed value failed the insert."""
    settings.KEYWARD_TRUSTED_PROXY_HOPS = 1
    account = make_account()
    response = APIClient(raise_request_exception=False).post(
        "/auth/login",
        {"email": account.email, "password": PASSWORD},
        format="json",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    assert response.status_code == 200
    assert SessionToken.objects.filter(account=account).exists()
