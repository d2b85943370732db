"""`manage.py rotate_master_key`: every secret stays readable after the old master key is gone."""

import base64
import io
import time

import pytest
from django.core.management import CommandError, call_command

from keyward.crypto import signing
from keyward.crypto.errors import UnknownKekError
from keyward.crypto.kms import LocalKek
from keyward.crypto.models import SigningKey
from keyward.jose.types import TokenType
from tests.core.test_config import GOOD_SECRET, run_manage
from tests.crypto.conftest import key_spellings, new_key

pytestmark = pytest.mark.django_db


def seal_signing_keys(count: int) -> dict[str, bytes]:
    """Create `count` signing keys (sealed rows) and return each kid's private key bytes."""
    signing.active_signing_key()
    for _ in range(count - 1):
        signing.rotate_signing_key()
    return {key.kid: key.unseal_secret() for key in SigningKey.objects.all()}


def rotate(**options) -> str:
    out = io.StringIO()
    call_command("rotate_master_key", stdout=out, stderr=out, **options)
    return out.getvalue()


def test_rotation_rewraps_everything_and_the_old_key_can_then_go(master_keys):
    key_a, key_b = new_key(), new_key()
    master_keys(key_a)
    secrets_before = seal_signing_keys(4)
    ciphertexts_before = {key.kid: bytes(key.ciphertext) for key in SigningKey.objects.all()}

    master_keys(key_b, key_a)
    out = rotate()
    assert "crypto.SigningKey: 4 re-wrapped, 0 already current, 0 failed" in out
    assert "Total: 4 re-wrapped, 0 already current, 0 failed" in out
    assert "KEYWARD_MASTER_KEY_PREVIOUS can now be removed" in out

    master_keys(key_b)  # key A is gone entirely
    signing.clear_key_cache()
    rows = list(SigningKey.objects.all())
    assert {row.kek_id for row in rows} == {LocalKek(key_b).kek_id}
    assert {row.kid: row.unseal_secret() for row in rows} == secrets_before
    assert {row.kid: bytes(row.ciphertext) for row in rows} == ciphertexts_before, "plaintext must not be re-sealed"
    token = signing.sign_token({"sub": "x", "exp": int(time.time()) + 60}, TokenType.CREDENTIAL)
    assert token.count(".") == 2


def test_running_it_again_changes_nothing(master_keys):
    key_a, key_b = new_key(), new_key()
    master_keys(key_a)
    seal_signing_keys(3)
    master_keys(key_b, key_a)
    rotate()
    stored = list(SigningKey.objects.order_by("pk").values_list("wrapped_key", "kek_id"))

    out = rotate()
    assert "Total: 0 re-wrapped, 3 already current, 0 failed" in out
    assert list(SigningKey.objects.order_by("pk").values_list("wrapped_key", "kek_id")) == stored


def test_a_rewrap_that_changed_or_failed_something_is_a_platform_audit_row(master_keys):
    from keyward.audit.models import AuditEvent

    key_a, key_b, key_c = new_key(), new_key(), new_key()
    master_keys(key_a)
    seal_signing_keys(3)
    master_keys(key_b, key_a)
    rotate()
    rotate()  # nothing left to do: no second row
    rows = AuditEvent.objects.filter(org=None, event_type="master_key.rewrapped")
    assert [(row.outcome, row.actor_name, row.detail) for row in rows] == [
        ("success", "manage.py rotate_master_key", {"kek_id": LocalKek(key_b).kek_id, "rewrapped": 3, "failed": 0})
    ]

    master_keys(key_c)  # key B forgotten: every row fails
    with pytest.raises(CommandError):
        rotate()
    failed = AuditEvent.objects.filter(event_type="master_key.rewrapped").latest("seq")
    assert (failed.outcome, failed.detail["failed"], failed.detail["rewrapped"]) == ("failure", 3, 0)
    recorded = str(list(AuditEvent.objects.values()))
    assert not [spelling for key in (key_a, key_b, key_c) for spelling in key_spellings(key) if spelling in recorded]


def test_small_batches_cover_every_row(master_keys):
    key_a, key_b = new_key(), new_key()
    master_keys(key_a)
    secrets_before = seal_signing_keys(5)
    master_keys(key_b, key_a)
    assert "5 re-wrapped" in rotate(batch_size=2)
    master_keys(key_b)
    assert {row.kid: row.unseal_secret() for row in SigningKey.objects.all()} == secrets_before


def test_rows_wrapped_by_several_earlier_keys_all_move_to_the_current_one(master_keys):
    key_a, key_b, key_c = new_key(), new_key(), new_key()
    master_keys(key_a)
    seal_signing_keys(2)
    master_keys(key_b, key_a)  # a rotation that was never finished
    signing.rotate_signing_key()
    master_keys(key_c, key_b, key_a)
    assert "3 re-wrapped" in rotate()
    master_keys(key_c)
    assert all(row.unseal_secret() for row in SigningKey.objects.all())


def test_a_missing_previous_key_fails_loudly_and_changes_nothing(master_keys):
    key_a, key_b = new_key(), new_key()
    master_keys(key_a)
    seal_signing_keys(2)
    stored = list(SigningKey.objects.order_by("pk").values_list("wrapped_key", "kek_id"))

    master_keys(key_b)  # the operator forgot KEYWARD_MASTER_KEY_PREVIOUS
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 data key\\(s\\) could not be re-wrapped") as caught:
        call_command("rotate_master_key", stdout=out, stderr=out)
    text = out.getvalue() + str(caught.value)
    assert "0 re-wrapped, 0 already current, 2 failed" in text
    assert LocalKek(key_a).kek_id in text
    for secret in (*key_spellings(key_a), *key_spellings(key_b)):
        assert secret not in text
    assert list(SigningKey.objects.order_by("pk").values_list("wrapped_key", "kek_id")) == stored
    with pytest.raises(UnknownKekError):
        SigningKey.objects.first().unseal_secret()


def test_batch_size_must_be_positive():
    with pytest.raises(CommandError, match="--batch-size"):
        rotate(batch_size=0)


def test_the_procedure_end_to_end_through_the_environment(tmp_path):
    """What an operator runs: env variables, real processes, real exit codes."""
    key_a, key_b = (base64.b64encode(new_key()).decode() for _ in range(2))
    base = {
        "KEYWARD_DEV_MODE": "1",
        "KEYWARD_SECRET_KEY": GOOD_SECRET,
        "KEYWARD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    assert run_manage({**base, "KEYWARD_MASTER_KEY": key_a}, "migrate", tmp_path=tmp_path).returncode == 0
    made = run_manage({**base, "KEYWARD_MASTER_KEY": key_a}, "rotate_signing_key", tmp_path=tmp_path)
    assert made.returncode == 0, made.stderr

    forgot = run_manage({**base, "KEYWARD_MASTER_KEY": key_b}, "rotate_master_key", tmp_path=tmp_path)
    assert forgot.returncode != 0
    assert "1 failed" in forgot.stdout

    (tmp_path / "previous").write_text(key_a + "\n")
    switched = {**base, "KEYWARD_MASTER_KEY": key_b, "KEYWARD_MASTER_KEY_PREVIOUS_FILE": str(tmp_path / "previous")}
    done = run_manage(switched, "rotate_master_key", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Total: 1 re-wrapped, 0 already current, 0 failed" in done.stdout

    again = run_manage({**base, "KEYWARD_MASTER_KEY": key_b}, "rotate_master_key", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Total: 0 re-wrapped, 1 already current, 0 failed" in again.stdout
    signed = run_manage({**base, "KEYWARD_MASTER_KEY": key_b}, "rotate_signing_key", tmp_path=tmp_path)
    assert signed.returncode == 0, signed.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KEYWARD_MASTER_KEY_PREVIOUS": "not base64!"}, "KEYWARD_MASTER_KEY_PREVIOUS must be base64"),
        ({"KEYWARD_MASTER_KEY_PREVIOUS": "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=,c2hvcnQ="}, "exactly 32"),
        ({"KEYWARD_MAX_CREDENTIAL_TTL": "59"}, "KEYWARD_MAX_CREDENTIAL_TTL must be at least 60"),
        ({"KEYWARD_MAX_CREDENTIAL_TTL": "a day"}, "KEYWARD_MAX_CREDENTIAL_TTL must be an integer"),
    ],
)
def test_bad_crypto_settings_stop_start_up_naming_the_variable(tmp_path, env, message):
    result = run_manage(env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_previous_master_keys_are_read_comma_separated(tmp_path):
    keys = [base64.b64encode(new_key()).decode() for _ in range(2)]
    result = run_manage(
        {"KEYWARD_MASTER_KEY_PREVIOUS": f" {keys[0]} , {keys[1]},"},
        "shell",
        "-c",
        "from django.conf import settings; print([len(k) for k in settings.KEYWARD_MASTER_KEY_PREVIOUS])",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[32, 32]"


def test_many_failures_are_summarised_not_listed_one_line_each(master_keys):
    """A forgotten previous key fails every row; tens of thousands of stderr lines would bury the fix."""
    key_a, key_b = new_key(), new_key()
    master_keys(key_a)
    seal_signing_keys(13)
    master_keys(key_b)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="13 data key"):
        call_command("rotate_master_key", stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    assert len(lines) == 11
    assert sum(LocalKek(key_a).kek_id in line for line in lines) == 10
    assert lines[-1] == "  crypto.SigningKey: 3 more not listed"
    assert "crypto.SigningKey: 0 re-wrapped, 0 already current, 13 failed" in out.getvalue()
