"""One error shape everywhere: `{"error": code, "message": text, "request_id": id}`.

Service functions raise `keyward.core.exceptions.ServiceError`; the DRF exception handler and
Django's error views here render it, so no view builds an error body by hand and no trace leaks.
An outage of the database or Redis is a 503 with `Retry-After` (`dependency_unavailable`), never a
500: the DRF handler maps it for API views, and `server_error` for everything else (middleware,
plain Django views), where Django calls it inside its `except` block, so the exception is at hand.
"""

import logging
import sys

import redis
from django import db
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from keyward.core.exceptions import CacheUnavailable, DatabaseUnavailable, ServiceError, ServiceUnavailable
from keyward.core.middleware import current_request_id

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, fields=None) -> dict:
    body = {"error": code, "message": message, "request_id": current_request_id()}
    if fields:
        body["fields"] = fields
    return body


_DRF_CODES = {
    drf.ParseError: ("invalid_request", "The request body is not valid JSON."),
    drf.AuthenticationFailed: ("invalid_token", None),
    drf.NotAuthenticated: ("not_authenticated", "Authentication credentials were not provided."),
    drf.PermissionDenied: ("forbidden", None),
    drf.NotFound: ("not_found", "Not found."),
    drf.MethodNotAllowed: ("method_not_allowed", None),
    drf.NotAcceptable: ("not_acceptable", None),
    drf.UnsupportedMediaType: ("unsupported_media_type", "Send the body as application/json."),
    drf.Throttled: ("rate_limited", None),
}


# Lost or refused connections, timeouts, and the transient refusals a database gives under strain
# (PostgreSQL: serialization failures, deadlocks, cancelled statements; SQLite: a locked database).
DATABASE_ERRORS = (db.OperationalError, db.InterfaceError)
# The shared cache (Redis): throttles and other counters. Redis still loading after a restart
# (BusyLoadingError) is a ConnectionError too.
CACHE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def dependency_unavailable(exc: BaseException | None) -> ServiceUnavailable | None:
    """The 503 that an outage of the database or the cache becomes; None for any other exception."""
    if isinstance(exc, DATABASE_ERRORS):
        return DatabaseUnavailable("The database is unavailable right now; try again shortly.")
    if isinstance(exc, CACHE_ERRORS):
        return CacheUnavailable("The cache (Redis) is unavailable right now; try again shortly.")
    return None


def _field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return {
            key: _field_errors(value) if isinstance(value, dict) else [str(v) for v in _as_list(value)]
            for key, value in detail.items()
        }
    return {"non_field_errors": [str(v) for v in _as_list(detail)]}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def api_exception_handler(exc, context) -> Response | None:
    """DRF hook: render every known exception in the one error shape."""
    unavailable = dependency_unavailable(exc)
    if unavailable is not None:
        # The client sees a code and a request id; the traceback stays in the log.
        logger.error("%s: %s", unavailable.code, type(exc).__name__, exc_info=exc)
        exc = unavailable
    elif isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    if isinstance(exc, ServiceError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code, headers=exc.headers)

    if isinstance(exc, drf.ValidationError):
        set_rollback()
        return Response(
            error_body("invalid_request", "The request is invalid; see fields.", _field_errors(exc.detail)),
            status=400,
        )

    if isinstance(exc, drf.APIException):
        set_rollback()
        code, message = "error", None
        for exc_type, (mapped_code, mapped_message) in _DRF_CODES.items():
            if isinstance(exc, exc_type):
                code, message = mapped_code, mapped_message
                break
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, message or str(exc.detail)), status=exc.status_code, headers=headers)

    return None


def json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def bad_request(request: HttpRequest, exception=None) -> JsonResponse:
    return json_error("invalid_request", "Bad request.", 400)


def permission_denied(request: HttpRequest, exception=None) -> JsonResponse:
    return json_error("forbidden", "You do not have permission to do this.", 403)


def not_found(request: HttpRequest, exception=None) -> JsonResponse:
    return json_error("not_found", "Not found.", 404)


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500. Django logs the traceback (django.request) after this returns."""
    unavailable = dependency_unavailable(sys.exc_info()[1])
    if unavailable is not None:
        return JsonResponse(
            error_body(unavailable.code, unavailable.message),
            status=unavailable.status_code,
            headers=unavailable.headers,
        )
    return json_error("internal_error", "Something went wrong on our side; quote the request id.", 500)


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    return json_error("csrf_failed", "CSRF verification failed; reload the page and try again.", 403)
