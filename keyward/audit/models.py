"""The audit log: one hash chain per org (plus one platform chain for events without an org).

Rows are written only through `keyward.audit.writer.record_event`. Each row stores the hash of
the row before it, so editing, deleting or reordering rows is found by `verify_chain`.
"""

from django.db import models

from keyward.tenancy.models import Org

GENESIS_HASH = "0" * 64
PLATFORM_CHAIN = "platform"


def chain_key(org: Org | int | None) -> str:
    """The chain a row belongs to: `org:<id>`, or `platform` for events without an org."""
    if org is None:
        return PLATFORM_CHAIN
    return f"org:{org if isinstance(org, int) else org.pk}"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"
    PENDING = "pending", "Pending"
    ERROR = "error", "Error"


class ActorType(models.TextChoices):
    ACCOUNT = "account", "Account"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class AuditChain(models.Model):
    """The head of one chain: the row lock that serialises appends, and the prune checkpoint.

    Keyed by a string (`org:<id>` / `platform`) rather than a nullable org FK, so the platform
    chain has an ordinary primary key to lock on every database.
    """

    key = models.CharField(max_length=40, primary_key=True)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    # Rows up to checkpoint_seq were pruned; the next row's prev_hash must equal checkpoint_hash.
    checkpoint_seq = models.BigIntegerField(default=0)
    checkpoint_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"{self.key} @ {self.last_seq}"


class AuditEvent(models.Model):
    """One audited fact. Never holds a secret; identities are copied as text so rows outlive them."""

    org = models.ForeignKey(Org, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    seq = models.BigIntegerField()
    created_at = models.DateTimeField()
    event_type = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason_code = models.CharField(max_length=64, blank=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_name = models.CharField(max_length=254, blank=True)  # email for accounts, name for agents
    end_user = models.CharField(max_length=254, blank=True)
    agent = models.CharField(max_length=200, blank=True)
    delegation_chain = models.JSONField(default=list, blank=True)
    provider = models.CharField(max_length=200, blank=True)
    scope = models.CharField(max_length=1000, blank=True)
    environment = models.CharField(max_length=64, blank=True)
    credential_jti = models.CharField(max_length=128, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["org", "seq"], name="audit_org_seq_unique"),
            models.UniqueConstraint(
                fields=["seq"], condition=models.Q(org__isnull=True), name="audit_platform_seq_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["org", "event_type", "seq"], name="audit_org_event_seq"),
            models.Index(fields=["org", "agent", "seq"], name="audit_org_agent_seq"),
            models.Index(fields=["org", "end_user", "seq"], name="audit_org_end_user_seq"),
            models.Index(fields=["org", "outcome", "seq"], name="audit_org_outcome_seq"),
            models.Index(fields=["org", "created_at"], name="audit_org_created_at"),
        ]

    def __str__(self) -> str:
        return f"{chain_key(self.org_id)}#{self.seq} {self.event_type} {self.outcome}"


class ExportFormat(models.TextChoices):
    JSON = "json", "JSON"
    CSV = "csv", "CSV"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class AuditExport(models.Model):
    """A background export of one org's rows `since_seq < seq <= until_seq` to a file.

    The id is random (`exp_` + 128 bits) and also names the file, so neither a URL nor a path
    can be guessed or chosen by a caller. The window is fixed when the export is requested.
    """

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    since_seq = models.BigIntegerField()
    until_seq = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    requested_by = models.CharField(max_length=254, blank=True)  # the account's email, copied
    row_count = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=64, blank=True)  # a code, never an exception's text
    attempts = models.PositiveIntegerField(default=0)
    downloads = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the file (or, before it exists, the request) expires and is deleted.
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["org", "created_at"], name="audit_export_org_created"),
            models.Index(fields=["status", "expires_at"], name="audit_export_due"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"
