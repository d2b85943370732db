"""core.ratelimit: token buckets spent all-or-nothing, windows counted and drained once, in Redis
(services pass) and in the per-process fallback alike."""

import time
from unittest import mock

import pytest
from django.conf import settings

from keyward.core import ratelimit
from keyward.core.ratelimit import Limit

SLOW = Limit(per_minute=1, burst=2)
ROOMY = Limit(per_minute=1, burst=100)


@pytest.fixture(params=["local", "redis"])
def backend(request, monkeypatch):
    """Each behaviour once per process (no Redis) and once in the machine's Redis (services pass only)."""
    if request.param == "local":
        monkeypatch.setattr(settings, "REDIS_URL", None)
    else:
        request.applymarker(pytest.mark.redis)
        if not settings.REDIS_URL:
            pytest.skip("needs redis: runs in the services pass (.ci/run)")
    ratelimit.reset_local()
    return request.param


def test_a_bucket_gives_its_burst_then_says_when_to_come_back(backend):
    verdicts = [ratelimit.take({"a": SLOW}) for _ in range(3)]
    assert [verdict.allowed for verdict in verdicts] == [True, True, False]
    assert verdicts[2].refused_by == "a"
    assert 1 <= verdicts[2].retry_after <= 60


def test_several_buckets_are_spent_all_or_nothing(backend):
    assert ratelimit.take({"tight": Limit(1, 1)}).allowed
    refused = ratelimit.take({"roomy": ROOMY, "tight": Limit(1, 1)})
    assert (refused.allowed, refused.refused_by) == (False, "tight")
    # `roomy` paid nothing for the refusal: all 100 are still there.
    assert [ratelimit.take({"roomy": ROOMY}).allowed for _ in range(100)] == [True] * 100
    assert not ratelimit.take({"roomy": ROOMY}).allowed


def test_peek_spends_nothing(backend):
    for _ in range(5):
        assert ratelimit.peek({"p": SLOW}).allowed
    assert ratelimit.take({"p": SLOW}).allowed
    assert ratelimit.take({"p": SLOW}).allowed
    assert not ratelimit.peek({"p": SLOW}).allowed


@pytest.mark.usefixtures("still_window")
def test_a_window_is_counted_then_drained_exactly_once(backend):
    facts = {"event": "test.flood", "key": f"k-{backend}-{time.time_ns()}"}
    counts = [ratelimit.count_in_window(facts, window_seconds=60) for _ in range(4)]
    assert counts == [1, 2, 3, 4]
    assert [item for item in ratelimit.drain_closed_windows() if item[0]["key"] == facts["key"]] == []  # still open

    with mock.patch("keyward.core.ratelimit.time.time", return_value=time.time() + 120):
        drained = [item for item in ratelimit.drain_closed_windows() if item[0]["key"] == facts["key"]]
        again = [item for item in ratelimit.drain_closed_windows() if item[0]["key"] == facts["key"]]
    assert [(item[0]["event"], item[1]) for item in drained] == [("test.flood", 4)]
    assert again == []


def test_the_fallback_holds_a_bounded_number_of_keys(monkeypatch, settings):
    settings.REDIS_URL = None
    monkeypatch.setattr(ratelimit, "LOCAL_MAX_KEYS", 3)
    ratelimit.reset_local()
    for name in "abcd":
        ratelimit.take({name: SLOW})
        ratelimit.count_in_window({"key": name}, window_seconds=60)
    local = ratelimit._local
    assert len(local.buckets) == len(local.open) == 3
    assert len(local.counters) == 3  # a forgotten window takes its counter with it


def test_an_unreachable_redis_falls_back_at_once_and_pauses(settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    ratelimit.reset_local()
    assert ratelimit.take({"x": SLOW}).allowed
    assert "limits hold per process" in caplog.text
    with mock.patch("redis.Redis.from_url") as connect:
        assert ratelimit.take({"x": SLOW}).allowed  # paused: no new attempt at Redis
        connect.assert_not_called()
    assert not ratelimit.take({"x": SLOW}).allowed  # the per-process bucket still limits
