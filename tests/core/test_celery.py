"""The Celery wiring deployments rely on: every task lands on a queue a plain worker consumes, every
beat entry names a real task, and the reliability options are on."""

import pytest

from keyward.celery import app

app.loader.import_default_modules()  # what a worker does at start: import every app's tasks module
KEYWARD_TASKS = sorted(name for name in app.tasks if name.startswith("keyward."))


def test_keyward_has_tasks_to_check():
    assert len(KEYWARD_TASKS) >= 8


@pytest.mark.parametrize("task_name", KEYWARD_TASKS)
def test_every_task_goes_to_a_queue_a_default_worker_consumes(task_name):
    route = app.amqp.router.route({}, task_name)
    assert route["queue"].name in app.amqp.queues.consume_from


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("keyward.outbox.tasks.deliver_outbox_message", "notifications"),
        ("keyward.siem.tasks.deliver_siem", "siem"),
        ("keyward.siem.tasks.sweep_siem", "siem"),
        ("keyward.outbox.tasks.sweep_outbox", "maintenance"),
        ("keyward.approvals.tasks.expire_approvals", "maintenance"),
        ("keyward.audit.tasks.write_audit_export", "default"),
    ],
)
def test_tasks_are_routed_by_job(task_name, queue):
    """Slow exports and a backlogged SIEM never hold up approval notifications."""
    assert app.amqp.router.route({}, task_name)["queue"].name == queue


def test_every_beat_entry_names_a_registered_task():
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled <= set(app.tasks)


def test_tasks_survive_a_lost_worker_and_cannot_run_forever():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.task_time_limit > app.conf.task_soft_time_limit > 0
    assert app.conf.worker_prefetch_multiplier == 1


def test_a_worker_never_gives_up_reconnecting_to_redis():
    """Celery's default stops a worker after 100 failed reconnects (about 45 minutes of outage)."""
    assert app.conf.broker_connection_retry is True
    assert app.conf.broker_connection_max_retries is None
