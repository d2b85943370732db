"""docker/compose.yaml cannot run here, so its promises are checked against the settings instead;
the image's gunicorn configuration is run for real."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests
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


def test_every_service_comes_back_by_itself():
    """A worker that exits (a crash, a lost broker it could not survive) must not stop delivery silently."""
    assert set(SERVICES) == {"web", "worker", "beat", "postgres", "redis"}
    for name, service in SERVICES.items():
        assert service.get("restart") == "unless-stopped", name


def test_the_access_log_never_shows_a_query_string(tmp_path):
    """gunicorn's default access log prints the request line, so a signed download link would leak."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_") and k != "DJANGO_SETTINGS_MODULE"}
    env["KEYWARD_VAR_DIR"] = str(tmp_path)
    command = [sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "--bind", "127.0.0.1:0"]
    command += ["--workers", "1", "keyward.wsgi"]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        port = wait_for_listening_port(log)
        response = requests.get(f"http://127.0.0.1:{port}/healthz?sig=leaky-signature-123", timeout=10)
        assert response.status_code == 200
        access_line = wait_for_line(log, "/healthz")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert '"GET /healthz HTTP/1.1" 200' in access_line
    assert response.headers["X-Request-Id"] in access_line
    assert "leaky-signature-123" not in log.read_text()


def wait_for_listening_port(log: Path) -> int:
    line = wait_for_line(log, "Listening at: http://127.0.0.1:")
    return int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))


def wait_for_line(log: Path, needle: str, attempts: int = 300) -> str:
    """Poll the log (bounded: `attempts` x 0.1 s) for the first line containing `needle`."""
    for _ in range(attempts):
        for line in log.read_text().splitlines():
            if needle in line:
                return line
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared in the gunicorn log:\n{log.read_text()}")
