"""Validation and normalisation of policy conditions (keyward.policies.conditions)."""

import pytest

from keyward.policies.conditions import InvalidCondition, normalise


def test_nothing_is_no_conditions():
    assert normalise(None) == {}
    assert normalise({}) == {}


def test_a_time_window_is_normalised():
    window = {"days": ["FRI", "mon", "fri"], "start": "22:00", "end": "06:30", "tz": "Asia/Tokyo"}
    assert normalise({"time_window": window}) == {
        "time_window": {"days": ["mon", "fri"], "start": "22:00", "end": "06:30", "tz": "Asia/Tokyo"}
    }


def test_a_time_window_defaults_to_every_day_in_utc():
    assert normalise({"time_window": {"start": "09:00", "end": "17:00"}})["time_window"] == {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": "09:00",
        "end": "17:00",
        "tz": "UTC",
    }


def test_source_cidrs_are_normalised_and_deduplicated():
    cidrs = [" 10.0.0.0/8", "2001:DB8::/32", "10.0.0.0/8", "203.0.113.7"]
    assert normalise({"source_cidrs": cidrs}) == {"source_cidrs": ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7/32"]}


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (["source_cidrs"], "must be an object"),
        ({"geo": ["FR"]}, "Unknown condition 'geo'"),
        ({"source_cidrs": ["10.0.0.0/8"], "mfa": True}, "Unknown condition 'mfa'"),
        ({"time_window": "9-5"}, "must be an object"),
        ({"time_window": {"start": "09:00", "end": "17:00", "weekends": False}}, "unknown key 'weekends'"),
        ({"time_window": {"start": "9:00", "end": "17:00"}}, "start must be a 24-hour time"),
        ({"time_window": {"start": "09:00", "end": "24:00"}}, "end must be a 24-hour time"),
        ({"time_window": {"start": "09:00\n", "end": "17:00"}}, "start must be a 24-hour time"),
        ({"time_window": {"start": "09:00"}}, "end must be a 24-hour time"),
        ({"time_window": {"start": "09:00", "end": "09:00"}}, "are equal"),
        ({"time_window": {"start": "09:00", "end": "17:00", "days": []}}, "non-empty list"),
        ({"time_window": {"start": "09:00", "end": "17:00", "days": ["monday"]}}, "are not days"),
        ({"time_window": {"start": "09:00", "end": "17:00", "days": "mon"}}, "non-empty list"),
        ({"time_window": {"start": "09:00", "end": "17:00", "tz": "Mars/Olympus"}}, "IANA time zone"),
        ({"time_window": {"start": "09:00", "end": "17:00", "tz": "../../etc/passwd"}}, "IANA time zone"),
        ({"time_window": {"start": "09:00", "end": "17:00", "tz": 1}}, "IANA time zone"),
        ({"source_cidrs": []}, "list of 1 to"),
        ({"source_cidrs": "10.0.0.0/8"}, "list of 1 to"),
        ({"source_cidrs": ["10.0.0.1/8"]}, "has host bits set"),
        ({"source_cidrs": ["10.0.0.0/33"]}, "source_cidrs[0]"),
        ({"source_cidrs": ["10.0.0.0/8", "intranet"]}, "source_cidrs[1]"),
        ({"source_cidrs": [10]}, "must be a string"),
        ({"source_cidrs": ["::ffff:10.0.0.0/104"]}, "IPv4-mapped"),
        ({"source_cidrs": [f"10.0.{n}.0/24" for n in range(101)]}, "list of 1 to 100"),
    ],
)
def test_bad_conditions_are_refused_with_a_reason(conditions, message):
    with pytest.raises(InvalidCondition) as refused:
        normalise(conditions)
    assert message in str(refused.value)
