"""Expire overdue approvals now (the beat schedule does this every minute). Idempotent."""

from django.core.management.base import BaseCommand, CommandError

from keyward.approvals.decisions import expire_due
from keyward.tenancy.models import Org


class Command(BaseCommand):
    help = "Expire pending approvals past their deadline and approved ones never used."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this org (slug)")

    def handle(self, *args, org: str | None, **options):
        scope = None
        if org is not None:
            scope = Org.objects.filter(slug=org).first()
            if scope is None:
                raise CommandError(f"No org with slug {org!r}.")
        total = 0
        while expired := expire_due(scope):  # each call handles a bounded batch
            total += expired
        self.stdout.write(self.style.SUCCESS(f"Expired {total} approval(s)."))
