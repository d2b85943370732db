"""The platform SIEM and the email file backend come from the environment and fail fast when wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "p" * 32
SHOW = "from django.conf import settings as s; print(s.KEYWARD_SIEM_WEBHOOK_URL, s.EMAIL_BACKEND)"


def run(env_overrides: dict, tmp_path: Path, code: str = SHOW) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update({"KEYWARD_VAR_DIR": str(tmp_path), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KEYWARD_SIEM_WEBHOOK_URL": "https://siem.example.com/in"}, "set both KEYWARD_SIEM_WEBHOOK_URL"),
        ({"KEYWARD_SIEM_WEBHOOK_SECRET": SECRET}, "set both KEYWARD_SIEM_WEBHOOK_URL"),
        (
            {"KEYWARD_SIEM_WEBHOOK_URL": "https://siem.example.com/in", "KEYWARD_SIEM_WEBHOOK_SECRET": "short"},
            "KEYWARD_SIEM_WEBHOOK_SECRET must be at least 32",
        ),
        (
            {"KEYWARD_SIEM_WEBHOOK_URL": "siem.example.com/hook/tok-3f9a77", "KEYWARD_SIEM_WEBHOOK_SECRET": SECRET},
            "absolute http(s)",
        ),
        (
            {
                "KEYWARD_SIEM_WEBHOOK_URL": "http://siem.example.com/in",
                "KEYWARD_SIEM_WEBHOOK_SECRET": SECRET,
                "KEYWARD_DEV_MODE": "0",
                "KEYWARD_ISSUER": "https://keyward.example.com",
                "KEYWARD_SECRET_KEY": "s" * 60,
                "KEYWARD_MASTER_KEY": "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=",
            },
            "must be an https:// URL outside dev mode",
        ),
        ({"KEYWARD_SMTP_HOST": "smtp.example.com", "KEYWARD_EMAIL_FILE_PATH": "var/mail"}, "set only one of"),
    ],
    ids=["url-without-secret", "secret-without-url", "short-secret", "not-a-url", "http-in-production", "two-mailers"],
)
def test_bad_configuration_stops_start_up(tmp_path, env, message):
    result = run(env, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr
    assert "tok-3f9a77" not in result.stderr  # a URL's token is a secret too


def test_the_secret_may_come_from_a_file_and_the_url_is_kept_as_given(tmp_path):
    secret_file = tmp_path / "siem_secret"
    secret_file.write_text(SECRET + "\n")
    result = run(
        {
            "KEYWARD_SIEM_WEBHOOK_URL": "https://siem.example.com/in/",
            "KEYWARD_SIEM_WEBHOOK_SECRET_FILE": str(secret_file),
            "KEYWARD_EMAIL_FILE_PATH": str(tmp_path / "mail"),
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "https://siem.example.com/in/",
        "django.core.mail.backends.filebased.EmailBackend",
    ]
