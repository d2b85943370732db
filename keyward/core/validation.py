"""Request input validation shared by every thin view: one serializer in, validated data out."""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


def validated(serializer_class: type[serializers.Serializer], data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a body or query parameters; invalid input is a 400 `invalid_request` with `fields`."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
