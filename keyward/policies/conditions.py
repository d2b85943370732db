"""Policy conditions: when a rule applies beyond its four fields (a time window, source networks).

Conditions are validated and normalised once, when a rule is created (`normalise`), and evaluated
on every request (`hold`), so the hot path never has to guess what a stored value means.
"""

import functools
import ipaddress
import re
import zoneinfo
from datetime import datetime
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SOURCE_CIDRS = 100
MAX_CIDR_LENGTH = 100
TIME_PATTERN = r"^([01][0-9]|2[0-3]):([0-5][0-9])$"
TZ_NAME_PATTERN = r"^[A-Za-z0-9_+\-/]{1,64}$"
# A day name in any case (the schema spells that out: JSON Schema patterns have no ignore-case flag).
DAY_PATTERN = "^(?:" + "|".join("".join(f"[{c}{c.upper()}]" for c in day) for day in DAYS) + ")$"
_TIME = re.compile(TIME_PATTERN)
_TZ_NAME = re.compile(TZ_NAME_PATTERN)
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_WINDOW_KEYS = {"days", "start", "end", "tz"}


class InvalidCondition(ValueError):
    """A condition an admin wrote that keyward cannot enforce exactly as written."""


class UnevaluableCondition(ValueError):
    """A stored condition that is not in the normalised shape (e.g. a row edited by hand)."""


def normalise(raw: Any) -> dict:
    """The canonical form of a rule's conditions; `InvalidCondition` names the first problem.

    Known conditions: `time_window {days?, start, end, tz?}` and `source_cidrs [cidr, ...]`.
    Unknown keys are refused rather than ignored: a condition keyward ignored would widen the rule.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidCondition('conditions must be an object, e.g. {"source_cidrs": ["10.0.0.0/8"]}.')
    unknown = sorted(set(raw) - {"time_window", "source_cidrs"})
    if unknown:
        raise InvalidCondition(
            f"Unknown condition {', '.join(map(repr, unknown))}; known conditions: source_cidrs, time_window."
        )
    normalised = {}
    if "time_window" in raw:
        normalised["time_window"] = _normalise_window(raw["time_window"])
    if "source_cidrs" in raw:
        normalised["source_cidrs"] = _normalise_cidrs(raw["source_cidrs"])
    return normalised


def _normalise_window(window: Any) -> dict:
    if not isinstance(window, dict):
        raise InvalidCondition("time_window must be an object {days?, start, end, tz?}.")
    unknown = sorted(set(window) - _WINDOW_KEYS)
    if unknown:
        raise InvalidCondition(f"time_window: unknown key {', '.join(map(repr, unknown))}; use days, start, end, tz.")
    days = window.get("days", list(DAYS))
    if not isinstance(days, list) or not days or not all(isinstance(day, str) for day in days):
        raise InvalidCondition(f"time_window.days must be a non-empty list of {', '.join(DAYS)}.")
    wanted = {day.lower() for day in days}
    if wanted - set(DAYS):
        raise InvalidCondition(f"time_window.days: {sorted(wanted - set(DAYS))} are not days; use {', '.join(DAYS)}.")
    start, end = (_clock(window, key) for key in ("start", "end"))
    if start == end:
        raise InvalidCondition("time_window.start and end are equal; leave time_window out to allow any time.")
    tz = window.get("tz", "UTC")
    if not isinstance(tz, str) or not _TZ_NAME.fullmatch(tz) or tz not in _known_time_zones():
        raise InvalidCondition("time_window.tz must be an IANA time zone name such as Europe/Paris.")
    return {"days": [day for day in DAYS if day in wanted], "start": start, "end": end, "tz": tz}


def _clock(window: dict, key: str) -> str:
    value = window.get(key)
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise InvalidCondition(f"time_window.{key} must be a 24-hour time HH:MM, e.g. 09:00.")
    return value


@functools.cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _normalise_cidrs(cidrs: Any) -> list[str]:
    if not isinstance(cidrs, list) or not cidrs or len(cidrs) > MAX_SOURCE_CIDRS:
        raise InvalidCondition(f"source_cidrs must be a list of 1 to {MAX_SOURCE_CIDRS} networks.")
    networks = []
    for index, text in enumerate(cidrs):
        if not isinstance(text, str) or len(text) > MAX_CIDR_LENGTH:
            raise InvalidCondition(f"source_cidrs[{index}] must be a string such as 10.0.0.0/8.")
        try:
            network = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as exc:
            raise InvalidCondition(f"source_cidrs[{index}]: {exc}.") from None
        if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
            raise InvalidCondition(f"source_cidrs[{index}] is an IPv4-mapped range; write it as IPv4.")
        networks.append(str(network))
    return list(dict.fromkeys(networks))


def hold(conditions: dict, *, ip: str | None, now: datetime) -> bool:
    """Whether every condition holds for a request from `ip` at `now` (an aware datetime).

    No `ip` (or an unparseable one) fails `source_cidrs`. Raises `UnevaluableCondition` when the
    stored conditions are not in the normalised shape; the engine then resolves restrictively.
    """
    try:
        unknown = set(conditions) - {"time_window", "source_cidrs"}
        if unknown:
            raise UnevaluableCondition(f"unknown conditions {sorted(unknown)}")
        window = conditions.get("time_window")
        if window is not None and not _within(window, now):
            return False
        cidrs = conditions.get("source_cidrs")
        return cidrs is None or _from_networks(cidrs, ip)
    except UnevaluableCondition:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise UnevaluableCondition(str(exc)) from exc


def _within(window: dict, now: datetime) -> bool:
    """Inside `[start, end)` local time on a listed day; a window that wraps midnight belongs to
    the day it starts on (fri 22:00-02:00 covers Friday 22:00 to Saturday 02:00)."""
    local = now.astimezone(zoneinfo.ZoneInfo(window["tz"]))
    minute = local.hour * 60 + local.minute
    start, end = _minutes(window["start"]), _minutes(window["end"])
    day = local.weekday()
    if start < end:
        inside = start <= minute < end
    elif minute >= start:
        inside = True
    else:
        inside, day = minute < end, (day - 1) % 7
    return inside and DAYS[day] in window["days"]


def _minutes(clock: str) -> int:
    if not _TIME.fullmatch(clock):
        raise UnevaluableCondition(f"bad time {clock!r}")
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _from_networks(cidrs: list[str], ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:203.0.113.7 is 203.0.113.7: a deny rule must still match it
    return any(address in ipaddress.ip_network(cidr) for cidr in cidrs)
