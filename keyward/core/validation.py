"""Request input validation shared by every thin view: one strict serializer in, validated data out.

Every input serializer, for a body or for query parameters, derives from `StrictSerializer` (or
mixes in `StrictFields`): a key it does not take is a 400 `invalid_request` naming the key in
`fields`, never silently dropped (a typo such as `secrets` or `max_ttl` would otherwise look like
success). `validated` refuses any other serializer, and tests/core/test_strict_input.py walks the
schema so a new view cannot take input around it.
"""

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.http import QueryDict
from rest_framework import serializers

from keyward.core.pagination import CURSOR_PATTERN

# An unknown key is echoed back in `fields`; bound how many and how much of each, so a body of
# thousands of junk keys gets a small answer.
MAX_REPORTED_KEYS = 20
MAX_REPORTED_KEY_LENGTH = 100


class StrictFields:
    """Refuse keys the serializer does not write and values of the wrong JSON type; query parameters alike.

    `refused_fields` maps a field name to a more helpful message than `unknown_field_message`.
    Read-only fields count as unknown: a client sending `id` or `status` is told, not ignored.
    A JSON value must have its field's type (DRF alone would take `5` for a string and `"5"` for a
    number, which the schema does not allow). Strings are taken as sent, untrimmed, so a stray space
    breaks a pattern or a length limit as the schema says it does. Query parameters must be given
    once, and one given empty (`?status=`) is validated as the empty string (refused unless the field
    allows blanks) instead of being taken as absent.
    """

    refused_fields: dict[str, str] = {}
    unknown_field_message = "Unknown field."
    min_fields = 0  # e.g. 1 for a PATCH that must change something; the schema says it as minProperties

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for field in fields.values():
            _untrimmed(field)
        return fields

    def to_internal_value(self, data):
        errors = {}
        query = isinstance(data, QueryDict)
        if query:
            errors.update(_repeated_parameters(data))
            data = {key: data.getlist(key)[-1] for key in data}
        if isinstance(data, Mapping):
            writable = {name: field for name, field in self.fields.items() if not field.read_only}
            for key in sorted(set(data) - set(writable))[:MAX_REPORTED_KEYS]:
                errors[_echoable(key)] = [self.refused_fields.get(key, self.unknown_field_message)]
            for name, field in writable.items():
                if name in data and (problem := (_query_type_error if query else _json_type_error)(field, data[name])):
                    errors.setdefault(name, [problem])
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _echoable(key) -> str:
    """An unknown key as the answer can name it: bounded, and an unpaired surrogate (which JSON
    text may carry but UTF-8 cannot encode) spelt as its escape."""
    return str(key)[:MAX_REPORTED_KEY_LENGTH].encode("utf-8", "backslashreplace").decode("utf-8")


def _untrimmed(field: serializers.Field) -> None:
    if isinstance(field, serializers.CharField):
        field.trim_whitespace = False
    if isinstance(getattr(field, "child", None), serializers.Field):
        _untrimmed(field.child)


# (field type, JSON type, what to say); the first match decides. Other fields (JSONField, custom ones)
# check their values themselves.
_JSON_TYPES = (
    (serializers.BooleanField, bool, "Expected a boolean."),
    (serializers.IntegerField, int, "Expected an integer."),
    (serializers.CharField, str, "Expected a string."),
    (serializers.ChoiceField, str, "Expected a string."),
    (serializers.DateTimeField, str, "Expected a string (an ISO 8601 time)."),
    (serializers.ListField, list, "Expected a list."),
    (serializers.DictField, dict, "Expected an object."),
    (serializers.Serializer, dict, "Expected an object."),
)
_INTEGER = re.compile(r"-?[0-9]+")


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    if value is None:
        return None  # the field's own allow_null decides
    for field_type, json_type, problem in _JSON_TYPES:
        if isinstance(field, field_type):
            if not isinstance(value, json_type) or (json_type is int and isinstance(value, bool)):
                return problem
            if isinstance(field, serializers.ListField) and isinstance(field.child, serializers.Field):
                return next(filter(None, (_json_type_error(field.child, item) for item in value)), None)
            if isinstance(field, serializers.DictField) and isinstance(field.child, serializers.Field):
                return next(filter(None, (_json_type_error(field.child, item) for item in value.values())), None)
            return None
    return None


def _query_type_error(field: serializers.Field, value: str) -> str | None:
    """Query values are strings; an integer one is digits only (DRF alone would take `5.0` and ` 5`)."""
    if isinstance(field, serializers.IntegerField) and not _INTEGER.fullmatch(value):
        return "Expected an integer."
    return None


def _repeated_parameters(params: QueryDict) -> dict[str, list[str]]:
    return {
        str(key)[:MAX_REPORTED_KEY_LENGTH]: ["Give this parameter once."]
        for key in list(params)[:MAX_REPORTED_KEYS]
        if len(params.getlist(key)) > 1
    }


class FullMatch(RegexValidator):
    """The whole value matches `pattern`, which the OpenAPI schema shows as the field's `pattern`.

    JSON Schema anchors `$` at the very end; Python's `$` (and so Django's RegexValidator) also
    matches before a final newline, which would let `name\\n` through.
    """

    def __call__(self, value) -> None:
        if not self.regex.fullmatch(str(value)):
            raise DjangoValidationError(self.message, code=self.code, params={"value": value})


def credential_ttl_ceiling() -> int:
    """KEYWARD_MAX_CREDENTIAL_TTL, read when a value is checked (and when the schema is built)."""
    return settings.KEYWARD_MAX_CREDENTIAL_TTL


def ttl_seconds_field(**kwargs) -> serializers.IntegerField:
    """A lifetime in seconds from 60 to KEYWARD_MAX_CREDENTIAL_TTL, as agents and providers take it."""
    ceiling = MaxValueValidator(
        credential_ttl_ceiling,
        message="Ensure this value is less than or equal to %(limit_value)s (KEYWARD_MAX_CREDENTIAL_TTL).",
    )
    return serializers.IntegerField(min_value=60, validators=[ceiling], **kwargs)


def cursor_field() -> serializers.CharField:
    """A list's `cursor` parameter: a value from `next` or `previous` (keyward.core.pagination checks it)."""
    return serializers.CharField(
        required=False,
        max_length=200,
        validators=[FullMatch(CURSOR_PATTERN, "Invalid cursor.")],
        help_text="Opaque: a value from `next` or `previous`.",
    )


class StrictSerializer(StrictFields, serializers.Serializer):
    """The base of every input serializer that is not a ModelSerializer."""


def validated(
    serializer_class: type[serializers.Serializer], data: Mapping[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """Validate a body or query parameters; invalid input is a 400 `invalid_request` with `fields`."""
    if not issubclass(serializer_class, StrictFields):
        raise TypeError(f"{serializer_class.__name__} must derive from StrictSerializer (or mix in StrictFields)")
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
