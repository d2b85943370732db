"""Token buckets and per-window counters, atomic in Redis, with a per-process fallback.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second. `take` spends one
token from each named bucket only if every one of them has it (one Lua script, so concurrent
requests on many processes never spend the same token twice, and a request refused by one bucket
costs the others nothing). `peek` asks whether a token is there without spending it.

`count_in_window` counts events per key and fixed window (how many refusals a flood made), and
`drain_closed_windows` hands each finished window's count to exactly one caller.

When Redis is unset (dev mode) or unreachable, each process keeps its own buckets and counters in
memory: limits then hold per process rather than across the fleet (N processes allow N times the
rate) until Redis answers again, and no request fails or waits because Redis is down. After a
Redis error the fallback is used for PAUSE_SECONDS before Redis is tried again, so an outage costs
at most one short timeout per pause and process.
"""

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

# The bounds of what an org or an agent may set as its own limits.
MAX_RATE_PER_MINUTE = 1_000_000
MAX_BURST = 100_000
MAX_OUTSTANDING = 1_000_000

PAUSE_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.25
LOCAL_MAX_KEYS = 50_000  # the fallback forgets the least recently used buckets beyond this
OPEN_WINDOWS = "ratelimit:open-windows"

# KEYS: the buckets. ARGV[1]: tokens to spend (0 = only ask whether one is there), then rate and
# burst per key. Returns {index of the bucket that refused (0 = none), seconds until it could pass}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local need = math.max(cost, 1)
local levels = {}
local refused, wait = 0, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local level, at = tonumber(state[1]), tonumber(state[2])
  if level == nil then level, at = burst, now end
  level = math.min(burst, level + math.max(0, now - at) * rate)
  levels[i] = level
  if level < need then
    local seconds = (need - level) / rate
    if seconds > wait then refused, wait = i, seconds end
  end
end
if refused == 0 and cost > 0 then
  for i = 1, #KEYS do
    local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i] - cost), 'at', tostring(now))
    redis.call('EXPIRE', KEYS[i], math.ceil(burst / rate) + 1)
  end
end
return {refused, tostring(wait)}
"""

# KEYS[1]: the counter, KEYS[2]: the open-windows index. ARGV: member, window end (epoch s), ttl.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
return count
"""


@dataclass(frozen=True)
class Limit:
    """`burst` tokens at most, refilled at `per_minute` tokens a minute."""

    per_minute: int
    burst: int

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    refused_by: str = ""  # the name of the bucket that refused
    retry_after: int = 0  # whole seconds until it would allow one request


class _Local:
    """The per-process stand-in: the same arithmetic under a lock, with a bounded number of keys."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.counters: dict[str, int] = {}
        self.open: OrderedDict[str, tuple[str, float]] = OrderedDict()  # member -> (counter key, window end)

    def take(self, buckets: dict[str, Limit], cost: int) -> tuple[str, float]:
        now = time.monotonic()
        with self.lock:
            levels, refused, wait = {}, "", 0.0
            for key, limit in buckets.items():
                level, at = self.buckets.get(key, (float(limit.burst), now))
                level = min(limit.burst, level + max(0.0, now - at) * limit.rate)
                levels[key] = level
                if level < max(cost, 1) and (seconds := (max(cost, 1) - level) / limit.rate) > wait:
                    refused, wait = key, seconds
            if not refused and cost > 0:
                for key, level in levels.items():
                    self.buckets[key] = (level - cost, now)
                    self.buckets.move_to_end(key)
                while len(self.buckets) > LOCAL_MAX_KEYS:
                    self.buckets.popitem(last=False)
            return refused, wait

    def count(self, key: str, member: str, window_end: float) -> int:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            if self.counters[key] == 1:
                self.open[member] = (key, window_end)
                if len(self.open) > LOCAL_MAX_KEYS:  # a flood of distinct keys: forget the oldest
                    _, (oldest_key, _) = self.open.popitem(last=False)
                    self.counters.pop(oldest_key, None)
            return self.counters[key]

    def drain(self, now: float) -> list[tuple[str, int]]:
        with self.lock:
            closed = [member for member, (_, end) in self.open.items() if end <= now]
            return [(member, self.counters.pop(self.open.pop(member)[0], 0)) for member in closed]


_local = _Local()
_client: redis.Redis | None = None
_scripts: dict[str, object] = {}
_paused_until = 0.0


def _redis() -> redis.Redis | None:
    """This process's Redis client, or None when Redis is unset or paused after an error."""
    global _client
    if not settings.REDIS_URL or time.monotonic() < _paused_until:
        return None
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            health_check_interval=30,
        )
        _scripts.clear()
    return _client


def _script(client: redis.Redis, source: str):
    if source not in _scripts:
        _scripts[source] = client.register_script(source)
    return _scripts[source]


def _redis_failed(what: str) -> None:
    global _paused_until
    _paused_until = time.monotonic() + PAUSE_SECONDS
    logger.warning("rate limits: Redis failed during %s; limits hold per process for %.0f s", what, PAUSE_SECONDS)


def _key(name: str) -> str:
    """Keys carry the cache's prefix and version, like every other key keyward keeps in Redis."""
    return cache.make_key(f"ratelimit:{name}")


def take(buckets: dict[str, Limit], *, cost: int = 1) -> Verdict:
    """Spend `cost` tokens from every bucket (name -> limit) if all have them; else spend nothing."""
    names = list(buckets)
    client = _redis()
    if client is not None:
        args: list = [cost]
        for name in names:
            args += [buckets[name].rate, buckets[name].burst]
        try:
            refused, wait = _script(client, _TAKE)(keys=[_key(name) for name in names], args=args)
        except redis.RedisError:
            _redis_failed("a rate-limit check")
        else:
            return _verdict(names[int(refused) - 1] if int(refused) else "", float(wait))
    refused_key, wait = _local.take({_key(name): buckets[name] for name in names}, cost)
    refused_name = next((name for name in names if _key(name) == refused_key), "")
    return _verdict(refused_name, wait)


def peek(buckets: dict[str, Limit]) -> Verdict:
    """Whether every bucket holds a token, spending none."""
    return take(buckets, cost=0)


def _verdict(refused_by: str, wait: float) -> Verdict:
    if not refused_by:
        return Verdict(allowed=True)
    return Verdict(allowed=False, refused_by=refused_by, retry_after=max(1, math.ceil(wait)))


def count_in_window(facts: dict, *, window_seconds: int) -> int:
    """Count one event for `facts` (a small JSON-able dict naming the key) in the current fixed window.

    Returns the running count (1 = the first of its window). Once the window has ended,
    `drain_closed_windows` hands the final count to one caller.
    """
    now = time.time()
    window = int(now // window_seconds)
    member = json.dumps({**facts, "window": window, "seconds": window_seconds}, sort_keys=True)
    window_end = (window + 1) * window_seconds
    client = _redis()
    if client is not None:
        try:
            return int(
                _script(client, _COUNT)(
                    keys=[_counter_key(member), _key(OPEN_WINDOWS)], args=[member, window_end, window_seconds * 10]
                )
            )
        except redis.RedisError:
            _redis_failed("counting refusals")
    return _local.count(_counter_key(member), member, window_end)


def _counter_key(member: str) -> str:
    return _key(f"window:{member}")


def drain_closed_windows(limit: int = 500) -> list[tuple[dict, int]]:
    """The facts and final count of every counted window that has ended; each is handed out once."""
    now = time.time()
    drained: list[tuple[str, int]] = []
    client = _redis()
    if client is not None:
        try:
            for raw in client.zrangebyscore(_key(OPEN_WINDOWS), "-inf", now, start=0, num=limit):
                member = raw.decode()
                if client.zrem(_key(OPEN_WINDOWS), member):  # whoever removes it owns its count
                    count = client.getdel(_counter_key(member))
                    drained.append((member, int(count or 0)))
        except redis.RedisError:
            _redis_failed("draining refusal counts")
    drained += _local.drain(now)
    return [(json.loads(member), count) for member, count in drained]


def reset_local() -> None:
    """Forget the per-process buckets, counters and any Redis pause (tests)."""
    global _local, _client, _paused_until
    _local = _Local()
    _client = None
    _paused_until = 0.0
