"""keyward's own `manage.py check --deploy` warnings: settings that are valid but unsafe in production."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

POSTGRESQL_ENGINE = "django.db.backends.postgresql"


@register(Tags.security, deploy=True)
def keyward_deploy_checks(app_configs=None, **kwargs) -> list[Warning]:
    """Warn about combinations that only make sense on a developer's machine."""
    warnings = []
    if settings.DEV_MODE and any(db["ENGINE"] == POSTGRESQL_ENGINE for db in settings.DATABASES.values()):
        warnings.append(
            Warning(
                "KEYWARD_DEV_MODE is on with a PostgreSQL database.",
                hint="Dev mode enables the built-in dev IdP, http:// URLs and generated secrets; "
                "unset KEYWARD_DEV_MODE (or set it to 0) in production.",
                id="keyward.W001",
            )
        )
    if settings.KEYWARD_ALLOW_PRIVATE_URLS and not settings.DEV_MODE:
        warnings.append(
            Warning(
                "KEYWARD_ALLOW_PRIVATE_URLS is on outside dev mode.",
                hint="Admins could then point outbound URLs (JWKS, webhooks) at loopback and private "
                "addresses inside your network; unset it in production.",
                id="keyward.W002",
            )
        )
    if settings.KEYWARD_BEHIND_TLS_PROXY and settings.KEYWARD_TRUSTED_PROXY_HOPS == 0:
        warnings.append(
            Warning(
                "KEYWARD_BEHIND_TLS_PROXY is on but KEYWARD_TRUSTED_PROXY_HOPS is 0.",
                hint=f"Every client then has the proxy's address, so {settings.KEYWARD_LOGIN_FAILURES_PER_IP} "
                "failed sign-ins from anyone lock everyone out. Set KEYWARD_TRUSTED_PROXY_HOPS to the number "
                "of proxies that append to X-Forwarded-For (or KEYWARD_BEHIND_TLS_PROXY=0 if no proxy is in "
                "front of keyward).",
                id="keyward.W003",
            )
        )
    if settings.REDIS_URL is None and not settings.DEV_MODE:
        warnings.append(
            Warning(
                "KEYWARD_REDIS_URL is unset outside dev mode.",
                hint="Without Redis, background work (approval notifications, SIEM delivery, audit exports) "
                "runs inside web requests, beat's sweeps and expiry never run, and sign-in throttling counts "
                "per process. Set KEYWARD_REDIS_URL and run a worker and beat.",
                id="keyward.W004",
            )
        )
    return warnings
