"""Real processes for the tests that need them: a private redis-server, Celery workers, gunicorn.

Every process listens on, or talks to, 127.0.0.1 only; each test starts what it needs on free
ports, against the database pytest-django created for it, and stops it afterwards. Nothing here
touches the machine's shared Redis or any database the test did not create.

Test modules import the fixtures they use (`from tests.processes import broker, workers, ...`).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import pytest
import redis
import requests
from django.db import connection
from kombu.exceptions import KombuError

from keyward.celery import app as celery_app
from keyward.outbox.tasks import sweep_outbox
from keyward.siem.tasks import sweep_siem

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll (bounded) until `predicate()` is truthy, else fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_process(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `grace` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def log_tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else ""


class PrivateRedis:
    """A throwaway redis-server on a free port that a test may stop and start again (empty: no persistence)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = log_dir / "redis.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: self._answers(client), 10, "the private redis-server to answer PING")

    def stop(self) -> None:
        """SIGKILL: Redis vanishes as in a crash, every client connection reset at once."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def flush(self) -> None:
        """Empty it: this server belongs to the test alone."""
        redis.Redis(port=self.port).flushall()

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.RedisError:
            return False


def database_url() -> str:
    """The URL of the database this test runs in (pytest-django's test_… copy), for child processes."""
    db = connection.settings_dict
    credentials = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def keyward_environment(var_dir: Path, *, redis_url: str, **extra: str) -> dict[str, str]:
    """A child's environment: this test's database, the given Redis, and this process's keys.

    The master key is the test process's, so a child opens what the test sealed (and the other
    way round). Dev mode: plain http on 127.0.0.1, private URLs allowed (the receivers are local).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="keyward.settings",
        KEYWARD_DATABASE_URL=database_url(),
        KEYWARD_REDIS_URL=redis_url,
        KEYWARD_SECRET_KEY=os.environ["KEYWARD_SECRET_KEY"],
        KEYWARD_MASTER_KEY=os.environ["KEYWARD_MASTER_KEY"],
        KEYWARD_DEV_MODE="1",
        KEYWARD_ALLOW_PRIVATE_URLS="1",
        KEYWARD_VAR_DIR=str(var_dir),
        KEYWARD_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


class Worker:
    def __init__(self, name: str, process: subprocess.Popen, log: Path) -> None:
        self.name, self.process, self.log = name, process, log

    def log_tail(self) -> str:
        return log_tail(self.log)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def answers_ping(self, timeout: float = 0.5) -> bool:
        """Whether it answers a control ping through the broker (False while the broker is away)."""
        try:
            return bool(celery_app.control.ping(destination=[self.name], timeout=timeout))
        except (redis.RedisError, KombuError, OSError):
            forget_broker_connections()  # this process's pooled connection died with the broker
            return False

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acks, no cleanup, as when a machine dies."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.process)


class Gunicorn:
    """keyward served as in production: gunicorn with docker/gunicorn.conf.py, bound to 127.0.0.1."""

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 2, threads: int = 8) -> None:
        command = [sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "--bind", "127.0.0.1:0"]
        command += ["--workers", str(workers), "--threads", str(threads)]
        # gunicorn 25+ opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl):
        # a test's server must not take it over from another gunicorn running on this machine.
        command += ["--no-control-socket", "keyward.wsgi"]
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        self.port = self._listening_port()
        wait_until(self._ready, START_TIMEOUT, f"gunicorn to answer /healthz:\n{log_tail(log)}", every=0.2)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        stop_process(self.process, grace=30)

    def _listening_port(self) -> int:
        pattern = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if match := pattern.search(log_tail(self.log, 100_000)):
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not start:\n{log_tail(self.log)}")

    def _ready(self) -> bool:
        try:
            return requests.get(self.url("/healthz"), timeout=2).status_code == 200
        except requests.RequestException:
            return False


def act_as_beat() -> None:
    """What beat does every few seconds: queue the sweeps that redeliver whatever was left behind."""
    sweep_outbox.delay()
    sweep_siem.delay()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("the services pass needs redis-server on PATH for the worker tests")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(private_redis) -> Iterator[PrivateRedis]:
    """This process publishes to the private Redis, for real (no eager tasks), for one test."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.broker_url
    private_redis.ensure_running()  # a failed test may have left it stopped
    private_redis.flush()
    conf.task_always_eager, conf.broker_url = False, private_redis.url
    forget_broker_connections()
    yield private_redis
    conf.task_always_eager, conf.broker_url = saved
    forget_broker_connections()


def forget_broker_connections() -> None:
    """Drop pooled broker connections, so the next publish connects to the broker configured now."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def mail_dir(tmp_path) -> Path:
    """Where the workers' email backend writes each message (KEYWARD_EMAIL_FILE_PATH)."""
    return tmp_path / "mail"


@pytest.fixture
def workers(transactional_db, broker, tmp_path, mail_dir, settings) -> Iterator[Callable[..., Worker]]:
    """Start real worker processes; each is stopped (TERM, then KILL) before the database is flushed.

    `as_deployed=True` runs `celery -A keyward worker` with the defaults the compose file uses
    (prefork pool, heartbeat, gossip, mingle); otherwise a lean solo worker that starts faster.
    """
    started: list[Worker] = []

    def start(*, as_deployed: bool = False) -> Worker:
        number = len(started) + 1
        name = f"test-worker-{number}@localhost"
        extra = {"KEYWARD_EMAIL_FILE_PATH": str(mail_dir)}
        if settings.KEYWARD_SIEM_WEBHOOK_URL:  # the operator's SIEM, as the test configured it
            extra["KEYWARD_SIEM_WEBHOOK_URL"] = settings.KEYWARD_SIEM_WEBHOOK_URL
            extra["KEYWARD_SIEM_WEBHOOK_SECRET"] = settings.KEYWARD_SIEM_WEBHOOK_SECRET
        env = keyward_environment(tmp_path / "worker-var", redis_url=broker.url, **extra)
        command = [sys.executable, "-m", "celery", "-A", "keyward", "worker", "-l", "WARNING", "-n", name]
        if as_deployed:
            command += ["--concurrency", "2"]  # prefork, as deployed; two children whatever the machine
        else:
            command += ["--pool=solo", "--without-heartbeat", "--without-mingle", "--without-gossip"]
        log = tmp_path / f"worker-{number}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        worker = Worker(name, process, log)
        started.append(worker)
        deadline = time.monotonic() + START_TIMEOUT
        while not worker.answers_ping():
            if not worker.alive or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{worker.log_tail()}")
        return worker

    yield start
    for worker in started:
        worker.stop()
