"""Test settings: the real settings, fed a fixed test environment, plus a fast password hasher."""

import os
import tempfile
import uuid

os.environ.setdefault("KEYWARD_SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("KEYWARD_MASTER_KEY", "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=")
os.environ.setdefault("KEYWARD_VAR_DIR", tempfile.mkdtemp(prefix="keyward-test-var-"))
os.environ.setdefault("KEYWARD_DEV_MODE", "1")

from keyward.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":  # noqa: F405
    # The services pass runs on a Redis others use too: this run's keys carry a prefix of their own,
    # and tests/conftest.py deletes only keys with that prefix (never FLUSHDB).
    CACHES["default"]["KEY_PREFIX"] = f"keyward-test-{uuid.uuid4().hex}"  # noqa: F405
