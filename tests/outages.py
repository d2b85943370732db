"""Outage helpers shared by the tests that prove an outage is a 503, never a 500."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

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
