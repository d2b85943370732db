"""What every attack in the catalogue must leave behind: a documented refusal, nothing issued, one audit row.

Take a `Baseline` before the attack and check the answer with `refused` afterwards:

    before = Baseline.take()
    response = world.ask(token=forged)
    refused(response, 401, "invalid_user_token", before=before, chain=token_refusal_chain(world.org))
"""

from dataclasses import dataclass

from django.db.models import Max

from broker.models import IssuedCredential
from keyward.audit.models import AuditEvent, chain_key
from keyward.tenancy.models import Org

ERROR_KEYS = {"error", "message", "request_id"}
# Keys of a 200 from the broker; none of them may appear in a refusal.
ISSUANCE_KEYS = {"credential", "delegation", "credential_id", "token_type", "expires_at"}

PLATFORM = None


def token_refusal_chain(claimed_org: Org) -> Org | None:
    """Where the broker audits refusing a user or delegation token that fails verification or is revoked.

    DESIGN today: before the org is known the row goes to the platform chain. Issue 10 moves the
    refusal of a forged or revoked token that names an org to that org's chain; when that lands,
    this is the one line to change (return `claimed_org`).
    """
    return PLATFORM


@dataclass(frozen=True)
class Baseline:
    """The issued credentials and the newest audit row before an attack."""

    issued: int
    last_audit_id: int

    @classmethod
    def take(cls) -> "Baseline":
        last = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
        return cls(issued=IssuedCredential.objects.count(), last_audit_id=last)

    def new_audit_rows(self) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(id__gt=self.last_audit_id).order_by("id"))


def nothing_issued(before: Baseline, body: object = None) -> None:
    """No credential record appeared, no issuance row was written, and the body carries no credential."""
    assert IssuedCredential.objects.count() == before.issued, "a credential record was created"
    issued_rows = [row for row in before.new_audit_rows() if row.event_type == "credential.issued"]
    assert not issued_rows, f"credential.issued rows were written: {issued_rows}"
    if isinstance(body, dict):
        assert not ISSUANCE_KEYS & set(body), f"the answer carries a credential: {sorted(body)}"


def refused(
    response,
    status: int,
    code: str,
    *,
    before: Baseline,
    chain: Org | None,
    event_type: str = "credential.denied",
    outcome: str = "denied",
    reason: str | None = None,
) -> AuditEvent:
    """The documented error, nothing issued, and exactly one audit row for this request, on `chain`.

    `chain` is the org whose chain holds the row, or PLATFORM. Returns the row for further checks.
    """
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert body.get("error") == code, body
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"fields"}, body
    nothing_issued(before, body)
    rows = [row for row in before.new_audit_rows() if row.request_id == body["request_id"]]
    assert len(rows) == 1, f"expected one audit row for this request, found {rows}"
    row = rows[0]
    assert (row.event_type, row.outcome, row.reason_code) == (event_type, outcome, reason or code)
    assert chain_key(row.org_id) == chain_key(chain), f"audited on {chain_key(row.org_id)}, not {chain_key(chain)}"
    return row
