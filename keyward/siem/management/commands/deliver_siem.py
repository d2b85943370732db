"""Deliver every SIEM stream's backlog now, in this process (what the periodic sweep does, without
waiting for backoffs). Exits non-zero while any stream is parked or still failing."""

from contextlib import suppress
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError

from keyward.audit.writer import Actor
from keyward.core.exceptions import Conflict
from keyward.siem import delivery, services
from keyward.siem.models import CursorState, DestinationKind, SiemCursor
from keyward.tenancy.models import Org

MAX_RUNS_PER_STREAM = 100  # each run is up to MAX_BATCHES_PER_RUN batches of BATCH_SIZE rows
COMMAND_ACTOR = Actor.system("manage.py deliver_siem")


class Command(BaseCommand):
    help = "Deliver SIEM streams now (platform and org destinations); --retry-parked first un-parks them."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="only this org's chain")
        parser.add_argument("--retry-parked", action="store_true", help="un-park parked streams first")

    def handle(self, *args, org: str | None, retry_parked: bool, **options):
        scope = None
        if org is not None:
            scope = Org.objects.filter(slug=org).first()
            if scope is None:
                raise CommandError(f"No org with slug {org!r}.")
        cursors = list(delivery.configured_cursors(scope).order_by("chain", "destination"))
        if not cursors:
            self.stdout.write("No SIEM destination is configured" + (f" for {scope.slug}." if scope else "."))
            return
        if retry_parked:
            self._unpark([cursor for cursor in cursors if cursor.state == CursorState.PARKED])
        tally: dict[str, int] = {}
        for cursor in cursors:
            result = self._drain(cursor)
            tally[result.outcome] = tally.get(result.outcome, 0) + 1
            if result.delivered or result.outcome != delivery.RunOutcome.UP_TO_DATE:
                self.stdout.write(f"  {self._name(cursor)}: {self._describe(result)}")
        summary = ", ".join(f"{count} {outcome.replace('_', ' ')}" for outcome, count in sorted(tally.items()))
        self.stdout.write(f"SIEM: {len(cursors)} stream(s): {summary}.")
        failing = {delivery.RunOutcome.PARKED, delivery.RunOutcome.BACKING_OFF}
        if failing & set(tally):
            raise CommandError(
                "Some SIEM streams are parked or still failing; see last_error above, GET /v1/siem, and the logs."
            )

    def _drain(self, cursor: SiemCursor) -> delivery.RunResult:
        """Deliver until up to date or failing; adds the runs' deliveries together."""
        delivered = batches = 0
        for _ in range(MAX_RUNS_PER_STREAM):
            result = delivery.deliver(cursor.destination, cursor.org_id, force=True)
            delivered, batches = delivered + result.delivered, batches + result.batches
            if result.outcome != delivery.RunOutcome.MORE:
                break
        return replace(result, delivered=delivered, batches=batches)

    def _unpark(self, parked: list[SiemCursor]) -> None:
        for cursor in parked:
            if cursor.destination == DestinationKind.ORG:
                with suppress(Conflict):  # un-parked meanwhile
                    services.retry_delivery(cursor.org, actor=COMMAND_ACTOR)
            else:
                services.retry_platform_delivery(cursor.chain, actor=COMMAND_ACTOR)
            self.stdout.write(f"  {self._name(cursor)}: un-parked (was {cursor.last_error or 'parked'})")

    @staticmethod
    def _name(cursor: SiemCursor) -> str:
        chain = f"org {cursor.org.slug}" if cursor.org is not None else "platform chain"
        return f"{cursor.destination} destination, {chain}"

    @staticmethod
    def _describe(result: delivery.RunResult) -> str:
        done = f"delivered {result.delivered} event(s) in {result.batches} batch(es)"
        if result.outcome == delivery.RunOutcome.UP_TO_DATE:
            return f"{done}; up to date at seq {result.last_seq}"
        if result.outcome == delivery.RunOutcome.PARKED:
            return f"{done}; PARKED after seq {result.last_seq} ({result.error}): fix the receiver, then --retry-parked"
        if result.outcome == delivery.RunOutcome.BACKING_OFF:
            next_try = result.retry_at.isoformat(timespec="seconds")
            return f"{done}; FAILING after seq {result.last_seq} ({result.error}), next try {next_try}"
        if result.outcome == delivery.RunOutcome.BUSY:
            return f"{done}; another delivery holds this stream, try again"
        return f"{done}; {result.outcome.replace('_', ' ')} after seq {result.last_seq}"
