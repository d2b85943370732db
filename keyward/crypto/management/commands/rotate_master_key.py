"""Re-wrap every data key under the current master key, after the operator has switched keys."""

from django.core.management.base import BaseCommand, CommandError

from keyward.crypto.envelope import rewrap_all
from keyward.crypto.kms import local_keyring

# Per model: a forgotten previous key fails every row alike, and the fix is one setting, not a row list.
LISTED_FAILURES = 10


class Command(BaseCommand):
    help = (
        "Re-wrap every stored data key that the current KEYWARD_MASTER_KEY did not wrap, using the keys in "
        "KEYWARD_MASTER_KEY_PREVIOUS to unwrap. Plaintext is never re-encrypted. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=100, help="rows locked per transaction (default 100)")

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        keyring = local_keyring()
        self.stdout.write(f"Current master key: {keyring.current.kek_id}")
        for previous in keyring.previous:
            self.stdout.write(f"Previous master key: {previous.kek_id}")

        reports = rewrap_all(batch_size=batch_size, performed_by="manage.py rotate_master_key")
        for report in reports:
            self.stdout.write(
                f"{report.model}: {report.rewrapped} re-wrapped, {report.already_current} already current, "
                f"{len(report.failures)} failed"
            )
            for failure in report.failures[:LISTED_FAILURES]:
                self.stderr.write(f"  {report.model} {failure}")
            if len(report.failures) > LISTED_FAILURES:
                self.stderr.write(f"  {report.model}: {len(report.failures) - LISTED_FAILURES} more not listed")

        rewrapped = sum(report.rewrapped for report in reports)
        current = sum(report.already_current for report in reports)
        failed = sum(len(report.failures) for report in reports)
        self.stdout.write(f"Total: {rewrapped} re-wrapped, {current} already current, {failed} failed")
        if failed:
            raise CommandError(
                f"{failed} data key(s) could not be re-wrapped; keep KEYWARD_MASTER_KEY_PREVIOUS and fix them first"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Every data key is wrapped by {keyring.current.kek_id}; "
                "KEYWARD_MASTER_KEY_PREVIOUS can now be removed."
            )
        )
