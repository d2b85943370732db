"""Every way the broker says no, with the status and code of DESIGN.md §4. Each one is audited."""

from keyward.core.exceptions import ServiceError
from keyward.tenancy.models import Org


class Refusal(ServiceError):
    """A broker outcome other than 200/202. `detail` holds non-secret facts for the audit row.

    `org` names the org a refusal belongs to when the caller was not authenticated but what it
    presented points at one org (a forged token for its IdP, a revoked delegation token): the
    refusal is written to that org's audit chain instead of the platform's.
    """

    def __init__(self, message: str, *, detail: dict | None = None, fields: dict | None = None, org: Org | None = None):
        super().__init__(message, fields=fields)
        self.detail = detail or {}
        self.org = org


class InvalidBrokerRequest(Refusal):
    status_code, code = 400, "invalid_request"


class InvalidUserToken(Refusal):
    status_code, code = 401, "invalid_user_token"


class InvalidDelegation(Refusal):
    status_code, code = 401, "invalid_delegation"


class UnknownAgent(Refusal):
    status_code, code = 404, "unknown_agent"


class UnknownProvider(Refusal):
    status_code, code = 404, "unknown_provider"


class AgentRevoked(Refusal):
    status_code, code = 403, "agent_revoked"


class ScopeNotAllowed(Refusal):
    status_code, code = 403, "scope_not_allowed"


class PolicyDenied(Refusal):
    status_code, code = 403, "policy_denied"


class AttestationRequired(Refusal):
    status_code, code = 403, "agent_attestation_required"


class DelegationTooDeep(Refusal):
    status_code, code = 403, "delegation_too_deep"


class ApprovalDenied(Refusal):
    status_code, code = 403, "approval_denied"


class IdempotencyConflict(Refusal):
    status_code, code = 409, "idempotency_key_reused"


class NativeMintFailed(Refusal):
    status_code, code = 502, "native_mint_failed"


class LimitExceeded(Refusal):
    """A broker limit refused the request (429, with Retry-After). `limit` names which one
    (`source`, `end_user`, `agent`, `outstanding`, `introspection`). Audited once per key and window,
    then summed up, so a flood of refusals cannot drive the audit log or its lock."""

    status_code, code = 429, "rate_limited"

    def __init__(self, message: str, *, limit: str, retry_after: int, detail: dict | None = None, org=None):
        super().__init__(message, detail={"limit": limit, **(detail or {})}, org=org)
        self.limit = limit
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class TooManyOutstanding(LimitExceeded):
    code = "too_many_outstanding"
