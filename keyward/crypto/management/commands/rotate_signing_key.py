"""Rotate keyward's signing key and retire the keys whose tokens have all expired."""

from django.conf import settings
from django.core.management.base import BaseCommand

from keyward.crypto import signing

PERFORMED_BY = "manage.py rotate_signing_key"


class Command(BaseCommand):
    help = (
        "Make a new active signing key; the old one stays published (retiring) until every token it signed "
        "has expired. Also retires retiring keys past that point. --retire-only skips the rotation."
    )

    def add_arguments(self, parser):
        parser.add_argument("--retire-only", action="store_true", help="only retire keys whose tokens have expired")

    def handle(self, *args, retire_only: bool, **options):
        if not retire_only:
            rotation = signing.rotate_signing_key(performed_by=PERFORMED_BY)
            self.stdout.write(f"New active signing key: {rotation.active.kid}")
            if rotation.retiring is not None:
                self.stdout.write(
                    f"Retiring {rotation.retiring.kid}: published until {rotation.retiring.retire_after.isoformat()} "
                    f"(KEYWARD_MAX_CREDENTIAL_TTL={settings.KEYWARD_MAX_CREDENTIAL_TTL}s + leeway)"
                )
        retired = signing.retire_expired_keys(performed_by=PERFORMED_BY)
        for kid in retired:
            self.stdout.write(f"Retired {kid}: no longer published")
        self.stdout.write(self.style.SUCCESS(f"Done: {len(retired)} key(s) retired."))
