"""Cursor pagination for admin lists. The cursor is client input: a malformed one is a 400, never a 500."""

import re

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

_POSITION = re.compile(r"^[0-9]{1,19}$")
# A cursor as the API hands it out: base64 (DRF encodes `o=…&r=…&p=…`); anything else is no cursor.
CURSOR_PATTERN = r"^[A-Za-z0-9+/=_-]{1,200}$"
MAX_POSITION = 2**63 - 1  # the largest bigint


def _is_position(value: str) -> bool:
    return bool(_POSITION.match(value)) and int(value) <= MAX_POSITION


def _is_aware_datetime(value: str) -> bool:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return False
    return parsed is not None and parsed.tzinfo is not None


class CheckedCursorPagination(CursorPagination):
    """Pages ordered by one column (`ordering`); `limit` sets the page size.

    Answers `{results, next, previous, page_size}`. DRF checks a cursor's offset and direction but
    passes its position to the database as given, so subclasses check the position is a value of
    the column (`valid_position`); anything else is `400 invalid_request`.
    """

    page_size_query_param = "limit"
    max_page_size = 500

    def valid_position(self, position: str) -> bool:
        """Whether a decoded cursor's position is a value of the ordering column."""
        raise NotImplementedError

    def decode_cursor(self, request):
        invalid = ValidationError({"cursor": ["Invalid cursor."]})
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise invalid from None
        if cursor is not None and cursor.position is not None and not self.valid_position(cursor.position):
            raise invalid
        return cursor

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "results": data,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "page_size": self.page_size,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        response = super().get_paginated_response_schema(schema)
        response["properties"]["page_size"] = {"type": "integer", "example": self.page_size}
        return response


class IntegerCursorPagination(CheckedCursorPagination):
    """Ordered by an integer column: a position is a whole number in the bigint range."""

    def valid_position(self, position: str) -> bool:
        return _is_position(position)


class DateTimeCursorPagination(CheckedCursorPagination):
    """Ordered by a timezone-aware datetime column: a position is an ISO 8601 time with an offset."""

    def valid_position(self, position: str) -> bool:
        return _is_aware_datetime(position)
