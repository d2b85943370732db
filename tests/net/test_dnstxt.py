"""The TXT lookup behind domain verification, against a fake resolver: no test touches real DNS."""

import dns.exception
import dns.resolver
import pytest

from keyward.net import dnstxt
from keyward.net.errors import OutboundError


class FakeTxt:
    def __init__(self, *strings: bytes):
        self.strings = strings


@pytest.fixture
def resolver(monkeypatch):
    """Replace dnspython's resolver; `calls` records (name, rdtype, lifetime), `answer` is returned or raised."""

    class FakeResolver:
        calls: list[tuple[str, str, float, bool]] = []
        answer: list[FakeTxt] | Exception = []

        def resolve(self, name, rdtype, *, lifetime, search):
            FakeResolver.calls.append((name.to_text(), rdtype, lifetime, search))
            if isinstance(FakeResolver.answer, Exception):
                raise FakeResolver.answer
            return FakeResolver.answer

    monkeypatch.setattr(dns.resolver, "Resolver", FakeResolver)
    return FakeResolver


def test_txt_values_are_returned_with_split_strings_joined(resolver):
    resolver.answer = [FakeTxt(b"keyward-verification=", b"abc"), FakeTxt(b"v=spf1 -all")]
    assert dnstxt.txt_records("_keyward.example.com") == ["keyward-verification=abc", "v=spf1 -all"]
    assert resolver.calls == [("_keyward.example.com.", "TXT", dnstxt.TXT_LOOKUP_TIMEOUT, False)]


@pytest.mark.parametrize("missing", [dns.resolver.NXDOMAIN(), dns.resolver.NoAnswer()])
def test_a_missing_name_or_record_is_no_values(resolver, missing):
    resolver.answer = missing
    assert dnstxt.txt_records("_keyward.example.com") == []


@pytest.mark.parametrize(
    "failure", [dns.exception.Timeout(), dns.resolver.NoNameservers(), dns.resolver.NoResolverConfiguration()]
)
def test_a_failed_lookup_is_an_outbound_error(resolver, failure):
    resolver.answer = failure
    with pytest.raises(OutboundError) as caught:
        dnstxt.txt_records("_keyward.example.com", timeout=1.0)
    assert caught.value.code == "dns_unavailable"
    assert resolver.calls[-1][2] == 1.0


def test_at_most_a_bounded_number_of_values_are_read(resolver):
    resolver.answer = [FakeTxt(b"x")] * (dnstxt.MAX_TXT_RECORDS + 10)
    assert len(dnstxt.txt_records("_keyward.example.com")) == dnstxt.MAX_TXT_RECORDS
