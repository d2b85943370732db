"""What a customer's own tooling does with exported rows: re-verify the chain with only the
documented formula, no keyward code."""

import hashlib
import json

GENESIS = "0" * 64


def assert_rows_reverify(rows: list[dict], previous: str = GENESIS) -> None:
    """`hash = sha256(prev_hash || canonical row)`, each row linked to the one before it."""
    for row in rows:
        row = dict(row)
        claimed = row.pop("hash")
        canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert row["prev_hash"] == previous
        assert hashlib.sha256(row["prev_hash"].encode() + canonical).hexdigest() == claimed
        previous = claimed
