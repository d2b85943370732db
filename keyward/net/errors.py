"""Errors of outbound HTTP. Not OSError subclasses on purpose: urllib3 would swallow and retry those."""


class OutboundError(Exception):
    """An outbound request did not produce a usable answer; `code` is a stable machine reason."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


class OutboundBlocked(OutboundError):
    """The SSRF guard refused the URL or the address it resolves to; nothing was sent."""


class ResponseTooLarge(OutboundError):
    """The answer was larger than the cap; it was cut off and discarded."""

    def __init__(self, limit: int):
        super().__init__(f"The response is larger than {limit} bytes.", code="response_too_large")
