"""Business-rule refusals raised by service functions, each with a stable machine code.

Plain Python (no DRF) so every layer can raise them; `keyward.core.errors` renders them.
"""


class ServiceError(Exception):
    """A business-rule refusal with a stable machine code and a human message."""

    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None, fields=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.fields = fields
        self.headers: dict[str, str] = {}


class InvalidRequest(ServiceError):
    status_code = 400
    code = "invalid_request"


class Unauthorized(ServiceError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class ServiceUnavailable(ServiceError):
    """Something keyward depends on is down for now: 503 with `Retry-After`, so clients back off and retry."""

    status_code = 503
    code = "service_unavailable"
    retry_after = 5

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message, code=code)
        self.headers["Retry-After"] = str(self.retry_after)


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class CacheUnavailable(ServiceUnavailable):
    code = "cache_unavailable"
