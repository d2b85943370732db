from celery import shared_task

from keyward.crypto.signing import retire_expired_keys


@shared_task(soft_time_limit=60, time_limit=90)
def retire_signing_keys() -> list[str]:
    """Retire signing keys whose every token has expired (they leave the JWKS)."""
    return retire_expired_keys(performed_by="signing-key-retirement")
