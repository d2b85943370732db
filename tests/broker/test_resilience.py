"""The retry and circuit-breaker wrapper every native minter goes through."""

import pytest

from broker.minters import MintError, resilience
from broker.minters.resilience import RetryableError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture(autouse=True)
def _fresh_breakers():
    resilience.reset()
    yield
    resilience.reset()


def flaky(failures: int, error=RetryableError):
    calls = {"n": 0}

    def operation():
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error("down", upstream_status=503)
        return "ok"

    return operation, calls


def test_retries_are_bounded_and_back_off():
    clock = Clock()
    operation, calls = flaky(failures=10)
    with pytest.raises(RetryableError):
        resilience.call("p1", operation, clock=clock, sleep=clock.sleep)
    assert calls["n"] == resilience.MAX_ATTEMPTS
    assert len(clock.slept) == resilience.MAX_ATTEMPTS - 1
    assert all(0 < pause <= 1 for pause in clock.slept)


def test_a_transient_failure_is_retried_to_success():
    clock = Clock()
    operation, calls = flaky(failures=1)
    assert resilience.call("p1", operation, clock=clock, sleep=clock.sleep) == "ok"
    assert calls["n"] == 2


def test_a_refusal_is_not_retried_and_does_not_open_the_breaker():
    clock = Clock()
    for _ in range(resilience.FAILURE_THRESHOLD + 2):
        operation, calls = flaky(failures=1, error=MintError)
        with pytest.raises(MintError):
            resilience.call("p1", operation, clock=clock, sleep=clock.sleep)
        assert calls["n"] == 1
    assert resilience.call("p1", lambda: "ok", clock=clock, sleep=clock.sleep) == "ok"


def test_the_breaker_opens_fails_fast_and_recovers():
    clock = Clock()
    dead, _ = flaky(failures=10**6)
    for _ in range(resilience.FAILURE_THRESHOLD):
        with pytest.raises(RetryableError):
            resilience.call("p1", dead, clock=clock, sleep=clock.sleep)

    never_called, calls = flaky(failures=0)
    with pytest.raises(MintError) as open_error:
        resilience.call("p1", never_called, clock=clock, sleep=clock.sleep)
    assert open_error.value.upstream_error == "circuit_open"
    assert calls["n"] == 0
    assert resilience.call("p2", never_called, clock=clock, sleep=clock.sleep) == "ok"  # per provider

    clock.now += resilience.OPEN_SECONDS + 1
    assert resilience.call("p1", never_called, clock=clock, sleep=clock.sleep) == "ok"  # half-open trial
    assert resilience.call("p1", never_called, clock=clock, sleep=clock.sleep) == "ok"  # closed again


def test_a_failed_trial_reopens_the_breaker():
    clock = Clock()
    dead, _ = flaky(failures=10**6)
    for _ in range(resilience.FAILURE_THRESHOLD):
        with pytest.raises(RetryableError):
            resilience.call("p1", dead, clock=clock, sleep=clock.sleep)
    clock.now += resilience.OPEN_SECONDS + 1
    with pytest.raises(RetryableError):
        resilience.call("p1", dead, clock=clock, sleep=clock.sleep)
    with pytest.raises(MintError, match="not calling"):
        resilience.call("p1", lambda: "ok", clock=clock, sleep=clock.sleep)


def test_an_unexpected_error_counts_as_a_failure_and_never_wedges_the_trial():
    clock = Clock()

    def boom():
        raise KeyError("bug")

    dead, _ = flaky(failures=10**6)
    for _ in range(resilience.FAILURE_THRESHOLD):
        with pytest.raises(RetryableError):
            resilience.call("p1", dead, clock=clock, sleep=clock.sleep)
    clock.now += resilience.OPEN_SECONDS + 1
    with pytest.raises(KeyError):
        resilience.call("p1", boom, clock=clock, sleep=clock.sleep)
    clock.now += resilience.OPEN_SECONDS + 1
    assert resilience.call("p1", lambda: "ok", clock=clock, sleep=clock.sleep) == "ok"
