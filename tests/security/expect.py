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
from keyward.idp.models import IdpConnector
from keyward.jose.errors import TokenInvalid
from keyward.jose.verify import peek_claims
from keyward.tenancy.models import Org

ERROR_KEYS = {"error", "message", "request_id"}
# Keys of a 200 from the broker; none of them may appear in a refusal.
ISSUANCE_KEYS = {"credential", "delegation", "credential_id", "token_type", "expires_at"}

PLATFORM = None


@dataclass(frozen=True)
class ByToken:
    """The chain a refused token's audit row belongs on, decided by the token the request presented."""

    org: Org

    def resolve(self, response) -> Org | None:
        headers = response.wsgi_request.headers
        if delegation := headers.get("X-Keyward-Delegation"):
            return self.org if _names_a_record_of(self.org, delegation) else PLATFORM
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        return self.org if _names_a_connector_of(self.org, token) else PLATFORM


def token_refusal_chain(claimed_org: Org) -> ByToken:
    """Where the broker audits refusing a user or delegation token: on the chain of the org the token
    names (ARCHITECTURE.md, decisions): a user token whose `iss`/`aud` select one of the org's IdP
    connectors, a delegation token whose ids (`cred`, `jti`) are a record keyward issued for the org.
    Anything else (another issuer, a mangled token, made-up ids) goes to the platform chain."""
    return ByToken(claimed_org)


def _claims(token: str) -> dict:
    try:
        claims = peek_claims(token)
    except TokenInvalid:
        return {}
    return claims if isinstance(claims, dict) else {}


def _names_a_connector_of(org: Org, token: str) -> bool:
    claims = _claims(token)
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    connectors = IdpConnector.objects.filter(org=org).values_list("issuer", "audience")
    return any(issuer == claims.get("iss") and audience in audiences for issuer, audience in connectors)


def _names_a_record_of(org: Org, token: str) -> bool:
    claims = _claims(token)
    ids = (claims.get("cred"), claims.get("jti"))
    if not all(isinstance(value, str) for value in ids):
        return False
    records = IssuedCredential.objects.filter(org=org).values_list("jti", "delegation_jti")
    return ids in set(records)


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
    chain: "Org | ByToken | None",
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
    if isinstance(chain, ByToken):
        chain = chain.resolve(response)
    assert chain_key(row.org_id) == chain_key(chain), f"audited on {chain_key(row.org_id)}, not {chain_key(chain)}"
    return row
