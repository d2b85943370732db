"""keyward settings: everything comes from the environment (docs/self-hosting.md lists it all).

With no environment at all keyward runs in dev mode on SQLite under var/, with generated
secrets persisted there and Celery tasks run in-process.
"""

import ssl
from datetime import timedelta
from pathlib import Path

from kombu import Queue

from keyward.config import (
    ConfigError,
    database_from_url,
    decode_master_key,
    dev_secret,
    env_bool,
    env_int,
    env_list,
    env_secret,
    env_str,
    new_master_key,
    new_secret_key,
    sqlite_database,
    validate_http_url,
    validate_redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("KEYWARD_VAR_DIR", str(BASE_DIR / "var")))

DATABASE_URL = env_str("KEYWARD_DATABASE_URL")
DEV_MODE = env_bool("KEYWARD_DEV_MODE", DATABASE_URL is None)
DEBUG = env_bool("KEYWARD_DEBUG", False)

KEYWARD_ISSUER = validate_http_url("KEYWARD_ISSUER", env_str("KEYWARD_ISSUER", "http://localhost:8000"))
if not DEV_MODE and not KEYWARD_ISSUER.startswith("https://"):
    raise ConfigError("KEYWARD_ISSUER must be an https:// URL outside dev mode")


def _required_secret(name: str, filename: str, generate) -> str:
    value = env_secret(name)
    if value is not None:
        return value
    if DEV_MODE:
        return dev_secret(VAR_DIR, filename, generate)
    raise ConfigError(f"{name} (or {name}_FILE) is required outside dev mode")


SECRET_KEY = _required_secret("KEYWARD_SECRET_KEY", "secret_key", new_secret_key)
if not DEV_MODE and len(SECRET_KEY) < 50:
    raise ConfigError("KEYWARD_SECRET_KEY must be at least 50 characters outside dev mode")
KEYWARD_MASTER_KEY = decode_master_key(
    "KEYWARD_MASTER_KEY", _required_secret("KEYWARD_MASTER_KEY", "master_key", new_master_key)
)
# Retired master keys, kept only to unwrap data keys until `manage.py rotate_master_key` has re-wrapped them.
KEYWARD_MASTER_KEY_PREVIOUS = tuple(
    decode_master_key("KEYWARD_MASTER_KEY_PREVIOUS", item.strip())
    for item in (env_secret("KEYWARD_MASTER_KEY_PREVIOUS") or "").split(",")
    if item.strip()
)

_issuer_host = KEYWARD_ISSUER.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
ALLOWED_HOSTS = env_list(
    "KEYWARD_ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEV_MODE else [_issuer_host],
)
KEYWARD_ALLOW_PRIVATE_URLS = env_bool("KEYWARD_ALLOW_PRIVATE_URLS", DEV_MODE)
# Multi-tenant identity providers, where each org has its own audience (client id) under one issuer
# (e.g. https://accounts.google.com). Every other issuer belongs to the one org that configured it.
KEYWARD_SHARED_ISSUERS = tuple(env_list("KEYWARD_SHARED_ISSUERS", []))

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "keyward.tenancy",
    "keyward.crypto",
    "keyward.audit",
    "keyward.accounts",
    "keyward.idp",
    "keyward.agents",
    "keyward.providers",
    "keyward.policies",
    "keyward.approvals",
    "keyward.outbox",
    "keyward.siem",
    "keyward.core",
    "broker",
    "console",
    "scim",
]

MIDDLEWARE = [
    "keyward.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "keyward.urls"
WSGI_APPLICATION = "keyward.wsgi.application"
ASGI_APPLICATION = "keyward.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if DATABASE_URL is None:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": sqlite_database(VAR_DIR / "keyward.sqlite3")}
else:
    DATABASES = {"default": database_from_url("KEYWARD_DATABASE_URL", DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("KEYWARD_REDIS_URL")
if REDIS_URL is not None:
    validate_redis_url("KEYWARD_REDIS_URL", REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "keyward",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.Account"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

KEYWARD_SESSION_TTL = timedelta(hours=12)
# How long the link in a sign-up confirmation email works.
KEYWARD_SIGNUP_CONFIRMATION_TTL = timedelta(hours=24)
# The ceiling on the lifetime of any token keyward signs; retiring signing keys stay published this long.
KEYWARD_MAX_CREDENTIAL_TTL = env_int("KEYWARD_MAX_CREDENTIAL_TTL", 86400, minimum=60)
# Async audit exports: where workers write the files (shared with the web processes that serve
# them), how long a finished file is kept, and how long a signed download link stays valid.
KEYWARD_EXPORT_DIR = Path(env_str("KEYWARD_EXPORT_DIR", str(VAR_DIR / "exports")))
KEYWARD_EXPORT_TTL = env_int("KEYWARD_EXPORT_TTL", 86400, minimum=60)
KEYWARD_EXPORT_LINK_TTL = env_int("KEYWARD_EXPORT_LINK_TTL", 600, minimum=10)
# The youngest audit rows anyone may delete, in days: POST /v1/audit/prune, org retention settings,
# the retention task and `manage.py prune_audit` all stop there. The operator's floor, not an org's.
KEYWARD_AUDIT_MIN_RETENTION_DAYS = env_int("KEYWARD_AUDIT_MIN_RETENTION_DAYS", 30, minimum=1)
# Broker limits (docs/self-hosting.md, "Rate limits"): token buckets per agent and per end user,
# a cap on an agent's live credentials, a budget of failed unauthenticated requests per source
# address, and a bucket per introspection key. Orgs and agents may set their own (Org/Agent fields).
KEYWARD_BROKER_AGENT_RATE_PER_MINUTE = env_int("KEYWARD_BROKER_AGENT_RATE_PER_MINUTE", 600, minimum=1)
KEYWARD_BROKER_AGENT_BURST = env_int("KEYWARD_BROKER_AGENT_BURST", 100, minimum=1)
KEYWARD_BROKER_END_USER_RATE_PER_MINUTE = env_int("KEYWARD_BROKER_END_USER_RATE_PER_MINUTE", 300, minimum=1)
KEYWARD_BROKER_END_USER_BURST = env_int("KEYWARD_BROKER_END_USER_BURST", 50, minimum=1)
KEYWARD_BROKER_MAX_OUTSTANDING_PER_AGENT = env_int("KEYWARD_BROKER_MAX_OUTSTANDING_PER_AGENT", 1000, minimum=1)
KEYWARD_BROKER_UNPROVEN_PER_MINUTE = env_int("KEYWARD_BROKER_UNPROVEN_PER_MINUTE", 30, minimum=1)
KEYWARD_BROKER_UNPROVEN_BURST = env_int("KEYWARD_BROKER_UNPROVEN_BURST", 20, minimum=1)
KEYWARD_INTROSPECTION_RATE_PER_MINUTE = env_int("KEYWARD_INTROSPECTION_RATE_PER_MINUTE", 6000, minimum=1)
KEYWARD_INTROSPECTION_BURST = env_int("KEYWARD_INTROSPECTION_BURST", 600, minimum=1)
# Refusals by a limit are audited once per key and window, then summed up in one row per window.
KEYWARD_REFUSAL_AUDIT_WINDOW = env_int("KEYWARD_REFUSAL_AUDIT_WINDOW", 60, minimum=1)
KEYWARD_LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
KEYWARD_LOGIN_FAILURES_PER_ACCOUNT = env_int("KEYWARD_LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
KEYWARD_LOGIN_FAILURES_PER_IP = env_int("KEYWARD_LOGIN_FAILURES_PER_IP", 30, minimum=1)
# Outside dev mode keyward expects a TLS-terminating reverse proxy in front of it by default. The
# proxy's own address is every request's REMOTE_ADDR, so the client is then one X-Forwarded-For hop
# away; trusting 0 hops would make all clients one address (one sign-in throttle for everyone).
KEYWARD_BEHIND_TLS_PROXY = not DEV_MODE and env_bool("KEYWARD_BEHIND_TLS_PROXY", True)
KEYWARD_TRUSTED_PROXY_HOPS = env_int("KEYWARD_TRUSTED_PROXY_HOPS", 1 if KEYWARD_BEHIND_TLS_PROXY else 0, minimum=0)

OTP_TOTP_ISSUER = "keyward"
OTP_TOTP_THROTTLE_FACTOR = 1

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["keyward.accounts.authentication.SessionTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["keyward.accounts.permissions.HasRequiredRole"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["keyward.core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "keyward.core.openapi.KeywardAutoSchema",
    "DEFAULT_METADATA_CLASS": "keyward.core.metadata.DescriptionOnlyMetadata",
    "EXCEPTION_HANDLER": "keyward.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {
        "signup": env_str("KEYWARD_SIGNUP_RATE", "10/hour"),
        "tenant": env_str("KEYWARD_TENANT_LOOKUP_RATE", "60/minute"),
        "idp_write": env_str("KEYWARD_IDP_WRITE_RATE", "30/hour"),
    },
    "NUM_PROXIES": KEYWARD_TRUSTED_PROXY_HOPS,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "keyward API",
    "DESCRIPTION": "Credential broker for AI agents: the agent-facing broker and the admin control plane.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "GET_LIB_DOC_EXCLUDES": "keyward.core.openapi.lib_doc_excludes",
    "ENUM_NAME_OVERRIDES": {
        "ProviderKindEnum": "keyward.providers.models.ProviderKind",
        "IdpKindEnum": "keyward.idp.models.IdpKind",
        "EffectEnum": "keyward.policies.models.Effect",
        "SignatureAlgorithmEnum": "keyward.idp.models.SUPPORTED_ALGORITHMS",
    },
}

SMTP_HOST = env_str("KEYWARD_SMTP_HOST")
# Dev and tests: every email becomes a file in this directory (what a real worker sent, observably).
EMAIL_FILE_DIR = env_str("KEYWARD_EMAIL_FILE_PATH")
if SMTP_HOST is not None and EMAIL_FILE_DIR is not None:
    raise ConfigError("set only one of KEYWARD_SMTP_HOST and KEYWARD_EMAIL_FILE_PATH")
if EMAIL_FILE_DIR is not None:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = EMAIL_FILE_DIR
elif SMTP_HOST is None:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = SMTP_HOST
    EMAIL_PORT = env_int("KEYWARD_SMTP_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("KEYWARD_SMTP_USER", "")
    EMAIL_HOST_PASSWORD = env_secret("KEYWARD_SMTP_PASSWORD") or ""
    EMAIL_USE_TLS = env_bool("KEYWARD_SMTP_STARTTLS", True)
    EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("KEYWARD_EMAIL_FROM", "keyward <keyward@localhost>")

# The operator's SIEM: every chain's audit events, streamed signed (docs/api.md, "SIEM streaming").
KEYWARD_SIEM_WEBHOOK_URL = env_str("KEYWARD_SIEM_WEBHOOK_URL")
KEYWARD_SIEM_WEBHOOK_SECRET = env_secret("KEYWARD_SIEM_WEBHOOK_SECRET")
if (KEYWARD_SIEM_WEBHOOK_URL is None) != (KEYWARD_SIEM_WEBHOOK_SECRET is None):
    raise ConfigError("set both KEYWARD_SIEM_WEBHOOK_URL and KEYWARD_SIEM_WEBHOOK_SECRET (or its _FILE), or neither")
if KEYWARD_SIEM_WEBHOOK_URL is not None:
    validate_http_url("KEYWARD_SIEM_WEBHOOK_URL", KEYWARD_SIEM_WEBHOOK_URL)  # checks; the URL is kept as given
    if not DEV_MODE and not KEYWARD_SIEM_WEBHOOK_URL.lower().startswith("https://"):
        raise ConfigError("KEYWARD_SIEM_WEBHOOK_URL must be an https:// URL outside dev mode")
    if len(KEYWARD_SIEM_WEBHOOK_SECRET) < 32:  # keyward.siem.services.MIN_SECRET_LENGTH
        raise ConfigError("KEYWARD_SIEM_WEBHOOK_SECRET must be at least 32 characters")

CELERY_BROKER_URL = REDIS_URL
if REDIS_URL is not None:
    # kombu's Redis transport with the fix that keeps a worker alive when Redis goes away.
    CELERY_BROKER_TRANSPORT = "keyward.core.celery_redis:Transport"
    if REDIS_URL.startswith("rediss://"):
        # Named by its path, the transport no longer takes TLS from the URL's scheme: ask for TLS,
        # with certificate checks (as the cache's redis-py client does for rediss://).
        CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that lost Redis keeps trying to reconnect for as long as it takes (Celery's default gives
# up after 100 attempts, about 45 minutes, and exits); compose restarts whatever exits anyway.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Redis redelivers a task whose worker died (acks_late) after this long; the outbox sweep is faster.
# A Redis that does not answer costs a request at most the connect timeout (keyward.core.queueing).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_connect_timeout": 3}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared, so a plain `celery -A keyward worker` consumes every queue; `-Q` splits them when needed.
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "notifications", "siem", "maintenance")]
CELERY_TASK_ROUTES = {
    "keyward.outbox.tasks.deliver_outbox_message": {"queue": "notifications"},
    "keyward.siem.tasks.*": {"queue": "siem"},
    "keyward.*.tasks.sweep_*": {"queue": "maintenance"},
    "keyward.*.tasks.expire_*": {"queue": "maintenance"},
    "keyward.*.tasks.prune_*": {"queue": "maintenance"},
    "keyward.*.tasks.retire_*": {"queue": "maintenance"},
    "keyward.*.tasks.summarise_*": {"queue": "maintenance"},
}
CELERY_BEAT_SCHEDULE = {
    "sweep-outbox": {"task": "keyward.outbox.tasks.sweep_outbox", "schedule": 30.0},
    "expire-approvals": {"task": "keyward.approvals.tasks.expire_approvals", "schedule": 60.0},
    "retire-signing-keys": {"task": "keyward.crypto.tasks.retire_signing_keys", "schedule": 3600.0},
    # Redelivers what a lost task, a dead worker or a Redis outage left behind; it also wakes retries.
    "sweep-siem": {"task": "keyward.siem.tasks.sweep_siem", "schedule": 10.0},
    "prune-audit-retention": {"task": "keyward.audit.tasks.prune_audit_retention", "schedule": 86400.0},
    "expire-audit-exports": {"task": "keyward.audit.tasks.expire_audit_exports", "schedule": 900.0},
    "prune-sign-in-records": {"task": "keyward.accounts.tasks.prune_sign_in_records", "schedule": 3600.0},
    "summarise-floods": {"task": "keyward.audit.tasks.summarise_floods", "schedule": 60.0},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(KEYWARD_SESSION_TTL.total_seconds())
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CSRF_FAILURE_VIEW = "keyward.core.errors.csrf_failure"

if not DEV_MODE:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("KEYWARD_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("KEYWARD_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = False
    if KEYWARD_BEHIND_TLS_PROXY:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SILENCED_SYSTEM_CHECKS = ["security.W021"]  # HSTS preload is the operator's decision, not ours.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "keyward.core.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env_str("KEYWARD_LOG_LEVEL", "INFO")},
    # Libraries that log request URLs or bodies at DEBUG stay at INFO even when keyward logs DEBUG:
    # a provider's URL or a token endpoint's answer must never reach a log line.
    "loggers": {
        "django.request": {"level": "ERROR"},
        "urllib3": {"level": "INFO"},
        "botocore": {"level": "INFO"},
        "boto3": {"level": "INFO"},
    },
}
