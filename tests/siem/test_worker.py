"""A real Celery worker process, a real (private) Redis and PostgreSQL: the background half end to end.

Each test starts `celery -A keyward worker` against the test database and a redis-server of its
own on a free port (never the machine's shared Redis, which these tests stop and start). The test
process issues credentials through the broker API with Celery no longer eager, so everything that
reaches the 127.0.0.1 receivers went through Redis and the worker. Where beat would run the sweeps
every few seconds, the test queues them itself (`act_as_beat`).
"""

import glob
import os
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
from django.db import connection
from rest_framework.test import APIClient

from keyward.accounts.models import Role
from keyward.approvals import decisions
from keyward.audit.models import AuditChain
from keyward.celery import app as celery_app
from keyward.outbox.models import MessageStatus, OutboxMessage
from keyward.outbox.tasks import sweep_outbox
from keyward.policies.models import Effect, Policy
from keyward.siem import services
from keyward.siem.models import SiemCursor
from keyward.siem.tasks import sweep_siem
from keyward.tenancy.models import Org
from tests.broker.conftest import World, _fresh_key_caches, allow, make_agent, make_provider  # noqa: F401
from tests.factories import make_account, make_audit_events, make_org
from tests.siem.conftest import PLATFORM_SECRET, SECRET, chain_ids
from tests.siem.receiver import SiemReceiver, signature_is_valid

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
DELIVERY_TIMEOUT = 60.0
HOOK_SECRET = "approval-hook-secret-0123456789"
READ = {"provider": "stripe", "scope": "charges:read", "ttl": "5m"}
WRITE = {"provider": "stripe", "scope": "charges:write", "ttl": "5m"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def ensure_running(self) -> None:
        if self._process is None or self._process.poll() is not None:
            self.start()

    def flush(self) -> None:
        redis.Redis(port=self.port).flushall()

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.RedisError:
            return False


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
    _forget_connections()
    yield private_redis
    conf.task_always_eager, conf.broker_url = saved
    _forget_connections()


def _forget_connections() -> None:
    """Drop pooled broker connections, so the next publish connects to the broker configured now."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def worker_database_url() -> str:
    """The URL of the database this test runs in (pytest-django's test_… copy), for the worker."""
    db = connection.settings_dict
    credentials = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


class Worker:
    def __init__(self, name: str, process: subprocess.Popen, log: Path) -> None:
        self.name, self.process, self.log = name, process, log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acks, no cleanup, as when a machine dies."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def mail_dir(tmp_path) -> Path:
    """Where the workers' email backend writes each message (KEYWARD_EMAIL_FILE_PATH)."""
    return tmp_path / "mail"


@pytest.fixture
def workers(transactional_db, broker, tmp_path, mail_dir, settings) -> Iterator[Callable[..., Worker]]:
    """Start real worker processes; each is stopped (TERM, then KILL) before the database is flushed."""
    started: list[Worker] = []

    def start() -> Worker:
        name = f"siem-test-{len(started) + 1}@localhost"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_") and k != "DJANGO_SETTINGS_MODULE"}
        env.update(
            DJANGO_SETTINGS_MODULE="keyward.settings",
            KEYWARD_DATABASE_URL=worker_database_url(),
            KEYWARD_REDIS_URL=broker.url,
            KEYWARD_SECRET_KEY=os.environ["KEYWARD_SECRET_KEY"],
            KEYWARD_MASTER_KEY=os.environ["KEYWARD_MASTER_KEY"],  # the worker opens what this process sealed
            KEYWARD_DEV_MODE="1",
            KEYWARD_ALLOW_PRIVATE_URLS="1",
            KEYWARD_VAR_DIR=str(tmp_path / "worker-var"),
            KEYWARD_EMAIL_FILE_PATH=str(mail_dir),
            KEYWARD_LOG_LEVEL="WARNING",
        )
        if settings.KEYWARD_SIEM_WEBHOOK_URL:
            env["KEYWARD_SIEM_WEBHOOK_URL"] = settings.KEYWARD_SIEM_WEBHOOK_URL
            env["KEYWARD_SIEM_WEBHOOK_SECRET"] = settings.KEYWARD_SIEM_WEBHOOK_SECRET
        log = tmp_path / f"worker-{len(started) + 1}.log"
        command = [sys.executable, "-m", "celery", "-A", "keyward", "worker", "--pool=solo"]  # as deployed: no -Q
        command += ["--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING", "-n", name]
        with log.open("wb") as output:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        worker = Worker(name, process, log)
        started.append(worker)
        deadline = time.monotonic() + START_TIMEOUT
        while not celery_app.control.ping(destination=[name], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{worker.log_tail()}")
        return worker

    yield start
    for worker in started:
        worker.stop()


def act_as_beat() -> None:
    """What beat does every few seconds: queue the sweeps that redeliver whatever was left behind."""
    sweep_outbox.delay()
    sweep_siem.delay()


def approval_world(org: Org) -> World:
    """Reads are allowed; writes wait for a human (whose notification the worker sends)."""
    world = World(org=org, agent=make_agent(org), provider=make_provider(org), client=APIClient())
    allow(org, provider="stripe")
    Policy.objects.create(org=org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    return world


def streamed_org(siem: SiemReceiver) -> tuple[Org, object]:
    org = make_org("Streamed")
    owner = make_account(org, Role.OWNER)
    make_account(org, Role.ADMIN)
    services.set_destination(org, url=siem.url(), secret=SECRET, actor=owner)
    return org, owner


def caught_up(receiver: SiemReceiver, org: Org) -> Callable[[], bool]:
    expected = chain_ids(org)
    return lambda: receiver.accepted_ids[: len(expected)] == expected


def test_a_real_worker_sends_the_approval_notice_and_streams_the_audit_log(
    workers, receivers, local_server, mail_dir, settings
):
    siem, platform = receivers(SECRET), receivers(PLATFORM_SECRET)
    settings.KEYWARD_SIEM_WEBHOOK_URL, settings.KEYWARD_SIEM_WEBHOOK_SECRET = platform.url(), PLATFORM_SECRET
    hook = local_server()
    hook.respond("/hook", status=204)
    workers()
    org, _owner = streamed_org(siem)
    decisions.set_webhook(org, url=hook.url("/hook"), secret=HOOK_SECRET)
    world = approval_world(org)

    answer = world.ask(WRITE)
    assert answer.status_code == 202, answer.content
    approval_id = answer.json()["approval_id"]

    wait_until(lambda: hook.count("/hook") == 1, DELIVERY_TIMEOUT, "the approval webhook")
    _method, _path, headers = hook.requests[0]
    assert signature_is_valid(headers, hook.bodies[0], HOOK_SECRET.encode())
    assert approval_id.encode() in hook.bodies[0]
    wait_until(lambda: glob.glob(str(mail_dir / "*.log")), DELIVERY_TIMEOUT, "the approval email")
    mail = "".join(Path(name).read_text() for name in glob.glob(str(mail_dir / "*.log")))
    assert "Subject: [keyward] Approval needed: invoice-bot wants stripe charges:write" in mail
    assert f"/approvals/{approval_id}" in mail

    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the org's SIEM stream")
    platform.wait_for(
        lambda: [i for i in platform.accepted_ids if i.startswith(f"org:{org.pk}:")] == chain_ids(org),
        DELIVERY_TIMEOUT,
        "the platform SIEM stream",
    )
    assert siem.accepted_ids == chain_ids(org)
    assert all(item.signature_ok for item in siem.received + platform.received)
    events = [event["event_type"] for item in siem.received for event in item.events]
    assert "credential.pending_approval" in events
    delivered = OutboxMessage.objects.filter(org=org, status=MessageStatus.DELIVERED)
    wait_until(lambda: delivered.count() == 2, DELIVERY_TIMEOUT, "the outbox rows to be marked delivered")


def test_issuance_succeeds_while_redis_is_down_and_everything_drains_after(
    workers, broker, receivers, local_server, mail_dir
):
    siem = receivers(SECRET)
    hook = local_server()
    hook.respond("/hook", status=204)
    workers()
    org, _owner = streamed_org(siem)
    decisions.set_webhook(org, url=hook.url("/hook"), secret=HOOK_SECRET)
    world = approval_world(org)
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the stream before the outage")
    head = AuditChain.objects.get(key=f"org:{org.pk}").last_seq
    wait_until(lambda: SiemCursor.objects.get(org=org).last_seq == head, DELIVERY_TIMEOUT, "the worker to be idle")

    broker.stop()
    answers = [world.ask(READ) for _ in range(3)] + [world.ask(WRITE)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 202]
    assert all(answer.json().get("credential") for answer in answers[:3])
    pending = OutboxMessage.objects.filter(org=org, status=MessageStatus.PENDING)
    assert pending.count() == 2  # the approval email and webhook wait in PostgreSQL
    head = AuditChain.objects.get(key=f"org:{org.pk}").last_seq
    assert SiemCursor.objects.get(org=org).last_seq < head  # and so do the audit rows

    broker.start()
    act_as_beat()
    wait_until(lambda: not pending.exists(), DELIVERY_TIMEOUT, "the outbox to drain after Redis returned")
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the SIEM stream to drain after Redis returned")
    assert siem.accepted_ids == chain_ids(org)
    assert hook.count("/hook") == 1
    assert glob.glob(str(mail_dir / "*.log"))


def test_a_worker_killed_mid_delivery_is_replaced_and_the_receiver_drops_the_repeat(workers, receivers):
    siem = receivers(SECRET)
    first = workers()
    org, _owner = streamed_org(siem)
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the first delivery")

    release = siem.hold_next()
    make_audit_events(org, 3)
    siem.wait_for(lambda: len(siem.received) == 2, DELIVERY_TIMEOUT, "the held delivery")
    held = siem.received[1]
    first.kill()  # mid-POST: the receiver has the events, the worker never hears back
    release.set()
    assert SiemCursor.objects.get(org=org).last_seq == 1  # its transaction died with its connection

    workers()
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    expected = chain_ids(org)
    while siem.accepted_ids != expected and time.monotonic() < deadline:
        act_as_beat()
        time.sleep(1)
    assert siem.accepted_ids == expected
    resent = [item for item in siem.received[2:] if set(held.ids) <= set(item.ids)]
    assert resent, siem.summary()
    assert siem.duplicates >= len(held.ids)


def test_a_siem_answering_500_for_a_while_gets_every_event_in_order(workers, receivers):
    siem = receivers(SECRET)
    workers()
    org, _owner = streamed_org(siem)
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "the stream before the outage")

    siem.answer_next(500, 500, 500)
    make_audit_events(org, 2)
    siem.wait_for(lambda: len(siem.received) >= 2, DELIVERY_TIMEOUT, "the first refused batch")
    make_audit_events(org, 2)  # more events while the SIEM is down
    siem.wait_for(caught_up(siem, org), DELIVERY_TIMEOUT, "recovery after the 500s")
    assert siem.statuses()[:5] == [200, 500, 500, 500, 200]
    assert siem.accepted_ids == chain_ids(org)
    assert siem.duplicates == 0
