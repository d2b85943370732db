"""Deliver every due outbox message now, in this process (what the periodic sweep does)."""

from django.core.management.base import BaseCommand, CommandError

from keyward.outbox import services
from keyward.outbox.models import MessageStatus, OutboxMessage


class Command(BaseCommand):
    help = "Deliver due outbox messages (notifications) now; --retry-parked first re-queues parked ones."

    def add_arguments(self, parser):
        parser.add_argument("--retry-parked", action="store_true", help="give parked messages another go")
        parser.add_argument("--max-batches", type=int, default=50, help="stop after this many batches (default 50)")

    def handle(self, *args, retry_parked: bool, max_batches: int, **options):
        if max_batches < 1:
            raise CommandError("--max-batches must be at least 1.")
        if retry_parked:
            parked = list(OutboxMessage.objects.filter(status=MessageStatus.PARKED))
            for message in parked:
                services.retry_parked(message)
            self.stdout.write(f"Re-queued {len(parked)} parked message(s).")
        outcomes: dict[str, int] = {}
        for _ in range(max_batches):
            due = services.due_messages()
            if not due:
                break
            for message_id in due:
                outcome = services.deliver(message_id)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "nothing due"
        parked = OutboxMessage.objects.filter(status=MessageStatus.PARKED).count()
        self.stdout.write(f"Outbox: {summary}; {parked} parked.")
        if outcomes.get(MessageStatus.PENDING) or outcomes.get(MessageStatus.PARKED):
            raise CommandError("Some messages could not be delivered; see the outbox (last_error) and logs.")
