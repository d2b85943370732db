"""Outage helpers shared by the tests that prove an outage is a 503, never a 500."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import InterfaceError, OperationalError, connection

DROPPED = {
    "operational": OperationalError("server closed the connection unexpectedly"),
    "interface": InterfaceError("connection already closed"),
}


@contextmanager
def database_drops(error: Exception, only: str = "") -> Iterator[None]:
    """Every query of the block (or only those whose SQL contains `only`) fails with `error`."""

    def fail(execute, sql, params, many, context):
        if only in sql:
            raise error
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail):
        yield


def assert_unavailable(response, code: str) -> dict:
    """A documented 503: the code, `Retry-After`, the one error shape, and nothing of the exception."""
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == code
    assert body["request_id"] == response["X-Request-Id"]
    text = response.content.decode()
    for leak in ("Traceback", "Error", "server closed", "already closed", "connecting to", "127.0.0.1"):
        assert leak not in text
    return body


def logged_traceback(caplog, exc_type: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """The log kept the traceback the client never saw."""
    return any(
        record.exc_info and isinstance(record.exc_info[1], exc_type) and record.levelno >= logging.ERROR
        for record in caplog.records
    )


def terminate_backends(*, only_pid: int | None = None, sparing_pid: int | None = None) -> int:
    """pg_terminate_backend on backends of this test's own database (never another database's):
    only `only_pid`, or every one but `sparing_pid` (and the admin connection doing it). How many died."""
    settings = connection.settings_dict
    where = "datname = current_database() AND pid <> pg_backend_pid()"
    if only_pid is not None:
        where, params = f"{where} AND pid = %s", [only_pid]
    else:
        where, params = f"{where} AND pid <> %s", [sparing_pid or 0]
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        autocommit=True,
    ) as admin:
        rows = admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}", params)  # noqa: S608
        return sum(1 for (terminated,) in rows.fetchall() if terminated)
