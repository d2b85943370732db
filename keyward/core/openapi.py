"""The OpenAPI schema's error answers, derived in one place from how each view is built.

`KeywardAutoSchema` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) adds to every operation the error
responses it can give, each with the one error body (`Error`) and the stable codes it may carry:

- 400 where it takes input (a request body or query parameters), 415 where DRF parses its body,
- 401 where it authenticates (with `WWW-Authenticate`),
- 403 where a permission can refuse (permissions say which codes through `openapi_errors(view)`),
- 404 where the path names an object,
- 429 where a throttle applies (with `Retry-After`),
- 503 everywhere: a dependency (database, cache, audit log) is down (with `Retry-After`).

A view with codes of its own adds them with `extend_schema(responses={409: errors("...")})`;
declaring only error answers there keeps the view's default success answer.
"""

from collections import defaultdict

import uritemplate
from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from drf_spectacular.drainage import warn
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance, get_lib_doc_excludes, is_basic_serializer, is_serializer
from drf_spectacular.utils import OpenApiRequest, OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from keyward.core.validation import StrictFields, StrictSerializer

DEPENDENCY_CODES = ("database_unavailable", "cache_unavailable", "audit_unavailable")
# DRF refuses a NUL in any string (PostgreSQL cannot store one); a field with no pattern of its own says so.
NO_NUL_PATTERN = r"^[^\x00]*$"

_STATUS_MEANINGS = {
    400: "The request is invalid; `fields` names each bad field.",
    401: "No valid credentials were sent.",
    403: "The caller may not do this.",
    404: "No such object (another org's objects do not exist either).",
    409: "The request conflicts with the object's current state.",
    410: "The link or object is gone.",
    415: "The body is not sent as `application/json`.",
    429: "Too many requests; retry after `Retry-After` seconds.",
    502: "An upstream provider failed.",
    503: "A dependency is unavailable; nothing was done. Retry after `Retry-After` seconds when given.",
}

_RETRY_AFTER = {
    "schema": {"type": "integer", "minimum": 1},
    "description": "Seconds to wait before trying again.",
}
_WWW_AUTHENTICATE = {"schema": {"type": "string"}, "description": "The authentication scheme to use."}


class ErrorSerializer(serializers.Serializer):
    """Every error answer's body, on every route."""

    error = serializers.CharField(
        help_text="A stable machine code (`invalid_request`, `not_found`, `rate_limited`, …); each response "
        "lists the codes the operation can answer with that status. Branch on this, not on `message`."
    )
    message = serializers.CharField(help_text="A human-readable explanation; its wording may change.")
    request_id = serializers.CharField(help_text="The request's id, also in the `X-Request-Id` header.")
    fields = serializers.DictField(
        required=False,
        help_text="Validation errors only: each bad field (nested for nested input) with its messages.",
    )

    class Meta:
        ref_name = "Error"


class ErrorResponse(OpenApiResponse):
    """An error answer with the codes a view adds to what `KeywardAutoSchema` derives."""

    def __init__(self, codes: tuple[str, ...]):
        super().__init__(response=ErrorSerializer)
        self.codes = codes


def errors(*codes: str) -> ErrorResponse:
    """`extend_schema(responses={409: errors("provider_exists")})`: the codes this status may carry here."""
    return ErrorResponse(codes)


def _status_of(key) -> int:
    return int(key[0] if isinstance(key, tuple) else key)


class KeywardAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        declared = self.get_response_serializers()
        codes = self.derived_error_codes()
        if isinstance(declared, dict):
            added = {_status_of(key): value for key, value in declared.items() if isinstance(value, ErrorResponse)}
            if len(added) == len(declared):  # only errors declared: the default success answer stays
                responses = {**self._default_success(direction), **responses}
            for status, response in added.items():
                codes[status] = [*codes[status], *(code for code in response.codes if code not in codes[status])]
        for status, status_codes in codes.items():
            responses[str(status)] = self._error_response(status, status_codes)
        return dict(sorted(responses.items()))

    def derived_error_codes(self) -> defaultdict[int, list[str]]:
        """The error answers that follow from the view's input, authentication, permissions, path and throttles."""
        codes: defaultdict[int, list[str]] = defaultdict(list)
        if self._takes_input():
            codes[400].append("invalid_request")
        if self._takes_a_body() and self.view.get_parsers():
            codes[415].append("unsupported_media_type")
        permissions = self.view.get_permissions()
        if self.view.get_authenticators() and not any(isinstance(p, AllowAny) for p in permissions):
            codes[401] += ["not_authenticated", "invalid_token"]
        for permission in permissions:
            for status, status_codes in getattr(permission, "openapi_errors", lambda view: {})(self.view).items():
                codes[status] += status_codes
        if uritemplate.variables(self.path):
            codes[404].append("not_found")
        if self.view.get_throttles():
            codes[429].append("rate_limited")
        codes[503] += DEPENDENCY_CODES
        return codes

    def _takes_input(self) -> bool:
        return self._takes_a_body() or any(parameter["in"] == "query" for parameter in self._get_parameters())

    def _takes_a_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None

    def _default_success(self, direction) -> dict:
        if self.method == "DELETE":
            return {"204": {"description": "No response body"}}
        status = "201" if self._is_create_operation() else "200"
        return {status: self._get_response_for_code(self._get_serializer(), status, direction=direction)}

    def _error_response(self, status: int, codes: list[str]) -> dict:
        meaning = _STATUS_MEANINGS.get(status, "")
        listed = ", ".join(f"`{code}`" for code in codes)
        response = self._get_response_for_code(
            OpenApiResponse(ErrorSerializer, description=f"{meaning} `error`: {listed}."), str(status)
        )
        headers = dict(response.get("headers", {}))
        if status == 401:
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        if status == 429:
            headers["Retry-After"] = {**_RETRY_AFTER, "required": True}
        if status == 503:
            headers["Retry-After"] = _RETRY_AFTER
        if headers:
            response["headers"] = headers
        return response

    def _map_basic_serializer(self, serializer, direction):
        """A strict input serializer's object takes no other keys (and at least `min_fields` of its own)."""
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictFields):
            schema["additionalProperties"] = False
            if serializer.min_fields:
                schema["minProperties"] = serializer.min_fields
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """Input strings as DRF checks them: at least one character unless blank is allowed, and no NUL."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or not isinstance(field, serializers.CharField) or schema.get("type") != "string":
            return schema
        if not field.allow_blank:
            schema["minLength"] = max(schema.get("minLength", 0), 1)
        own_pattern = any(isinstance(v, RegexValidator) for v in field.validators)  # mapped later, and wins
        if not own_pattern and any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators):
            schema["pattern"] = NO_NUL_PATTERN
        return schema

    def _get_request_body(self, direction="request"):
        if self.method not in ("POST", "PUT", "PATCH"):
            return super()._get_request_body(direction)
        declared = self.get_request_serializer()
        self._warn_unless_strict(declared)
        body = super()._get_request_body(direction)
        if body and getattr(declared, "min_fields", 0):  # a PATCH that must change something needs a body
            body["required"] = True
        return body

    def _process_override_parameters(self, direction="request"):
        for parameter in self.get_override_parameters():
            if is_basic_serializer(parameter):
                self._warn_unless_strict(parameter)
        return super()._process_override_parameters(direction)

    def _warn_unless_strict(self, declared) -> None:
        for serializer in declared.values() if isinstance(declared, dict) else [declared]:
            for name in loose_serializers(serializer):
                warn(f"{self.method} {self.path}: {name} takes input but does not derive from StrictSerializer")


def lib_doc_excludes() -> list[type]:
    """Base classes whose docstrings never describe a component (SPECTACULAR_SETTINGS GET_LIB_DOC_EXCLUDES)."""
    return [*get_lib_doc_excludes(), StrictSerializer, StrictFields]


def loose_serializers(declared) -> list[str]:
    """The serializers in an input declaration (nested ones included) that would drop unknown keys."""
    if isinstance(declared, OpenApiRequest):
        declared = declared.request
    if not is_serializer(declared):
        return []
    serializer = force_instance(declared)
    if isinstance(serializer, serializers.ListSerializer):
        return loose_serializers(serializer.child)
    found = [] if isinstance(serializer, StrictFields) else [type(serializer).__name__]
    for field in serializer.fields.values():
        if field.read_only:
            continue
        child = getattr(field, "child", None)
        found += loose_serializers(field) + loose_serializers(child)
    return found
