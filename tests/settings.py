"""Test settings: the real settings, fed a fixed test environment, plus a fast password hasher."""

import os
import tempfile

os.environ.setdefault("KEYWARD_SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("KEYWARD_MASTER_KEY", "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=")
os.environ.setdefault("KEYWARD_VAR_DIR", tempfile.mkdtemp(prefix="keyward-test-var-"))
os.environ.setdefault("KEYWARD_DEV_MODE", "1")

from keyward.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
