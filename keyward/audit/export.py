"""Streaming export bodies (JSON array, CSV): one chunk of rows at a time, so memory stays flat.

Each exported row is the canonical row plus its `hash`, so a JSON export can be re-verified
offline: `sha256(prev_hash || canonical JSON of the row without "hash")`.
"""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import models

from keyward.audit.chain import CANONICAL_FIELDS, canonical_fields

EXPORT_COLUMNS = (*CANONICAL_FIELDS, "hash")
STREAM_CHUNK_ROWS = 1_000
# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@")
# A cell starting with one of these is neutralised too: spreadsheets may drop leading whitespace and
# line breaks and then read what follows (`"\n=1+1"`) as a formula.
LEADING_BLANKS = " \t\r\n\x0b\x0c"


@dataclass
class RowTally:
    """How many rows a stream has produced so far (a background export reports it when done)."""

    rows: int = 0


def exported_rows(
    rows: models.QuerySet, chunk_rows: int = STREAM_CHUNK_ROWS, tally: RowTally | None = None
) -> Iterator[dict[str, Any]]:
    for event in rows.iterator(chunk_size=chunk_rows):
        if tally is not None:
            tally.rows += 1
        yield {**canonical_fields(event), "hash": event.hash}


def _batched(items: Iterable[str], size: int = STREAM_CHUNK_ROWS) -> Iterator[str]:
    """Join small pieces into fewer, larger chunks (fewer writes to the socket)."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def stream_json(
    rows: models.QuerySet, *, chunk_rows: int = STREAM_CHUNK_ROWS, tally: RowTally | None = None
) -> Iterator[str]:
    """A JSON array, one row per line; `chunk_rows` rows per database fetch and per yielded chunk."""

    def pieces() -> Iterator[str]:
        separator = "\n"
        for row in exported_rows(rows, chunk_rows, tally):
            yield separator + json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            separator = ",\n"

    yield "["
    yield from _batched(pieces(), chunk_rows)
    yield "\n]\n"


def neutralise_cell(value: str) -> str:
    """Prefix a formula-looking cell with `'` so spreadsheets show it as text: one that starts with a
    formula character, or with whitespace or a line break (whatever follows it)."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS + tuple(LEADING_BLANKS)) else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return neutralise_cell(str(value))


class _Line:
    """A file-like object whose write() hands back the line, so csv.writer can stream."""

    def write(self, value: str) -> str:
        return value


def stream_csv(
    rows: models.QuerySet, *, chunk_rows: int = STREAM_CHUNK_ROWS, tally: RowTally | None = None
) -> Iterator[str]:
    """CSV with a header row; JSON-valued columns hold compact JSON; formula-looking cells are neutralised."""
    writer = csv.writer(_Line())

    def pieces() -> Iterator[str]:
        yield writer.writerow(EXPORT_COLUMNS)
        for row in exported_rows(rows, chunk_rows, tally):
            yield writer.writerow([_cell(row[column]) for column in EXPORT_COLUMNS])

    yield from _batched(pieces(), chunk_rows)
