"""Every way the broker says no, with the status and code of DESIGN.md §4. Each one is audited."""

from keyward.core.exceptions import ServiceError


class Refusal(ServiceError):
    """A broker outcome other than 200/202. `detail` holds non-secret facts for the audit row."""

    def __init__(self, message: str, *, detail: dict | None = None, fields: dict | None = None):
        super().__init__(message, fields=fields)
        self.detail = detail or {}


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
