"""The operator commands as an operator runs them: real processes, exit codes, stdin, no tracebacks."""

import io
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.factories import make_org

ROOT = Path(__file__).resolve().parents[2]


def manage(var_dir: Path, *args: str, stdin: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess:
    """`manage.py` in dev mode on its own SQLite file under `var_dir`, whatever the test run's settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_") and k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "KEYWARD_VAR_DIR": str(var_dir), **(env or {})},
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def text(result: subprocess.CompletedProcess) -> tuple[str, str]:
    return result.stdout.decode(), result.stderr.decode()


@pytest.fixture(scope="module")
def demo_var(tmp_path_factory) -> Path:
    """A migrated dev database with the demo org (slug `demo`, provider `stripe`, a few audit rows)."""
    var_dir = tmp_path_factory.mktemp("var")
    for args in (("migrate", "-v0"), ("seed_demo",)):
        result = manage(var_dir, *args)
        assert result.returncode == 0, result.stderr
    return var_dir


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune_audit", "--days", "3_0"], "--days must be a whole number from 30 to 36500 (got '3_0')."),
        (["prune_audit", "--days", "30", "--org", "nope"], "No org with slug 'nope'."),
        (["verify_audit", "--org", "nope"], "No org with slug 'nope'."),
        (["expire_approvals", "--org", "nope"], "No org with slug 'nope'."),
        (["deliver_siem", "--org", "nope"], "No org with slug 'nope'."),
        (["deliver_outbox", "--max-batches", "0"], "--max-batches must be at least 1."),
    ],
    ids=["prune-days", "prune-org", "verify-org", "expire-org", "siem-org", "outbox-batches"],
)
def test_bad_arguments_exit_non_zero_with_one_clear_line(demo_var, args, message):
    result = manage(demo_var, *args)
    assert result.returncode == 1
    assert text(result) == ("", f"CommandError: {message}\n")


def test_rotate_secret_refuses_bytes_that_are_not_utf8_without_a_traceback(demo_var):
    result = manage(
        demo_var,
        *("rotate_secret", "--org", "demo", "--provider", "stripe"),
        stdin=b"sk_live_\xffSECRETPART\n",
        env={"PYTHONIOENCODING": "utf-8:strict"},  # a UTF-8 locale's stdin decodes strictly
    )
    out, err = text(result)
    assert result.returncode == 1
    assert err == "CommandError: The secret on stdin is not UTF-8 text.\n"
    assert "SECRETPART" not in out + err


@pytest.mark.parametrize("stdin", [b"", b"\n", b"  \r\n"])
def test_rotate_secret_refuses_empty_stdin(demo_var, stdin):
    result = manage(demo_var, "rotate_secret", "--org", "demo", "--provider", "stripe", stdin=stdin)
    assert (result.returncode, text(result)[1]) == (1, "CommandError: The secret on stdin is empty.\n")


def test_verify_audit_names_the_first_broken_row_and_exits_non_zero(demo_var, tmp_path):
    var_dir = tmp_path / "var"
    shutil.copytree(demo_var, var_dir)
    with sqlite3.connect(var_dir / "keyward.sqlite3") as db:
        db.execute("UPDATE audit_auditevent SET outcome = 'failure' WHERE seq IN (2, 3)")
    result = manage(var_dir, "verify_audit")
    out, err = text(result)
    assert result.returncode == 1
    assert out.startswith("BROKEN org:1 (demo) at seq 2: hash_mismatch")
    assert err == "CommandError: 1 of 1 audit chain(s) broken.\n"


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["3_0", "+30", "\u0663\u0660", " 30", "30.0"])
def test_prune_audit_takes_days_only_as_plain_digits(days):
    make_org()
    with pytest.raises(CommandError, match="--days must be a whole number"):
        call_command("prune_audit", "--days", days, stdout=io.StringIO())
