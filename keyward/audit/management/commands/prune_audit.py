"""Prune audit rows older than --days, for every org or one; never rows a SIEM has not received yet."""

from django.core.management.base import BaseCommand, CommandError

from keyward.audit.retention import OrgPrune, prune_org
from keyward.audit.services import MAX_PRUNE_DAYS, min_prune_days
from keyward.audit.writer import Actor
from keyward.tenancy.models import Org

COMMAND_ACTOR = Actor.system("manage.py prune_audit")


class Command(BaseCommand):
    help = (
        "Delete audit rows older than --days (every org, or one with --org), keeping each chain verifiable. "
        "Rows a SIEM destination has not received yet are kept. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", required=True, metavar="N", help=f"age in days, {min_prune_days()} to {MAX_PRUNE_DAYS}"
        )
        parser.add_argument("--org", metavar="SLUG", help="only this org (default: every org)")

    def handle(self, *args, days: str, org: str | None, **options):
        # Plain ASCII digits only: int() would also take "3_0", "+30" or other scripts' digits.
        floor = min_prune_days()
        if not (days.isascii() and days.isdigit() and floor <= int(days) <= MAX_PRUNE_DAYS):
            raise CommandError(f"--days must be a whole number from {floor} to {MAX_PRUNE_DAYS} (got {days!r}).")
        age = int(days)
        if org is not None:
            orgs = list(Org.objects.filter(slug=org))
            if not orgs:
                raise CommandError(f"No org with slug {org!r}.")
        else:
            orgs = Org.objects.order_by("pk").iterator()
        total = pruned_orgs = failed = 0
        for target in orgs:
            try:
                outcome = prune_org(target, age, actor=COMMAND_ACTOR)
            except Exception as exc:
                failed += 1
                self.stderr.write(self.style.ERROR(f"FAILED {target.slug}: {type(exc).__name__}: {exc}"))
                continue
            total += outcome.deleted
            pruned_orgs += 1
            self.stdout.write(_describe(outcome))
        summary = f"Deleted {total} audit row(s) older than {age} day(s) in {pruned_orgs} org(s)."
        if failed:
            self.stdout.write(summary)
            raise CommandError(f"Pruning failed for {failed} org(s); see above.")
        self.stdout.write(self.style.SUCCESS(summary))


def _describe(outcome: OrgPrune) -> str:
    line = f"{outcome.org.slug}: deleted {outcome.deleted} row(s)"
    if outcome.deleted:
        line += f", chain now starts after seq {outcome.checkpoint_seq}"
    if outcome.held_for_siem:
        line += f"; older rows after seq {outcome.siem_delivered_through} kept until every SIEM destination has them"
    return line
