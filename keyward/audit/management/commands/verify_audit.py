"""Walk audit hash chains and report the first broken row; exits non-zero when any chain is broken."""

from django.core.management.base import BaseCommand, CommandError

from keyward.audit.services import VerifyResult, verify_all_chains, verify_chain
from keyward.tenancy.models import Org


class Command(BaseCommand):
    help = "Verify the audit log's hash chains (every chain, or one org's with --org)."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="verify only this org's chain")

    def handle(self, *args, org: str | None, **options):
        if org is not None:
            found = Org.objects.filter(slug=org).first()
            if found is None:
                raise CommandError(f"No org with slug {org!r}.")
            results = [(found, verify_chain(found))]
        else:
            results = verify_all_chains()
        if not results:
            self.stdout.write("No audit chains yet.")
            return
        broken = 0
        for chain_org, result in results:
            label = f"{result.chain} ({chain_org.slug})" if chain_org is not None else result.chain
            if result.ok:
                self.stdout.write(self.style.SUCCESS(f"OK {label}: {_describe(result)}"))
            else:
                broken += 1
                self.stdout.write(
                    self.style.ERROR(
                        f"BROKEN {label} at seq {result.broken.seq}: {result.broken.reason} ({result.broken.message})"
                    )
                )
        if broken:
            raise CommandError(f"{broken} of {len(results)} audit chain(s) broken.")


def _describe(result: VerifyResult) -> str:
    span = f"seq {result.first_seq}..{result.last_seq}" if result.rows_checked else "no rows"
    checkpoint = f", pruned up to seq {result.checkpoint_seq}" if result.checkpoint_seq else ""
    return f"{result.rows_checked} rows verified ({span}{checkpoint})"
