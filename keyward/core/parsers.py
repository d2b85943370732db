"""The JSON body parser for every DRF view: DRF's, refusing what would otherwise fail later as a 500."""

import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(data: object) -> bool:
    """Any string (key or value, at any depth) holding an unpaired UTF-16 surrogate such as \\ud800."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class JSONParser(parsers.JSONParser):
    """Refuses (400 `invalid_request`) JSON nested too deeply to parse and strings with an unpaired
    surrogate (`"\\ud800"`): no UTF-8 text can hold one, so the database or the response renderer
    would fail on it later instead."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        if _has_lone_surrogate(data):
            raise ParseError("JSON parse error - a string holds an unpaired surrogate")
        return data
