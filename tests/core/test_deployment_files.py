"""docker/compose.yaml cannot run here, so its promises are checked against the settings instead."""

from pathlib import Path

import yaml

from keyward.celery import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_web_and_worker_share_the_export_directory():
    """A worker writes an export file that a web process later streams: same path, same volume."""
    for name in ("web", "worker"):
        service = SERVICES[name]
        export_dir = service["environment"]["KEYWARD_EXPORT_DIR"]
        assert f"exports:{export_dir}" in service["volumes"], name
    assert "exports" in COMPOSE["volumes"]


def test_the_worker_consumes_every_queue_tasks_are_routed_to():
    command = SERVICES["worker"]["command"].split()
    assert command[:4] == ["celery", "-A", "keyward", "worker"]
    assert not {"-Q", "--queues"} & set(command)  # a plain worker takes every declared queue
    assert set(app.amqp.queues.consume_from) == {"default", "notifications", "siem", "maintenance"}


def test_web_worker_and_beat_run_on_the_same_database_and_broker():
    environments = [SERVICES[name]["environment"] for name in ("web", "worker", "beat")]
    assert all(env["KEYWARD_DATABASE_URL"].startswith("postgres://") for env in environments)
    assert len({env["KEYWARD_DATABASE_URL"] for env in environments}) == 1
    assert len({env["KEYWARD_REDIS_URL"] for env in environments}) == 1
