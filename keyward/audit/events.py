"""Event type names written to the audit log. Features add theirs here, so names stay unique."""

from keyward.crypto import signals

ACCOUNT_SIGNUP = "account.signup"
ACCOUNT_SIGNUP_REQUESTED = "account.signup_requested"
ACCOUNT_SIGNUP_ATTEMPTED = "account.signup_attempted"
ACCOUNT_LOGIN = "account.login"
ACCOUNT_LOGIN_FAILED = "account.login_failed"
ACCOUNT_LOGOUT = "account.logout"
ACCOUNT_2FA_ENABLED = "account.2fa_enabled"
ACCOUNT_2FA_DISABLED = "account.2fa_disabled"
ACCOUNT_ROLE_CHANGED = "account.role_changed"
ACCOUNT_DEACTIVATED = "account.deactivated"
ACCOUNT_SUPERADMIN_CREATED = "account.superadmin_created"

# Platform chain: the operator's key management, announced by keyward.crypto.signals.
SIGNING_KEY_ROTATED = signals.SIGNING_KEY_ROTATED
SIGNING_KEY_RETIRED = signals.SIGNING_KEY_RETIRED
MASTER_KEY_REWRAPPED = signals.MASTER_KEY_REWRAPPED

AUDIT_PRUNED = "audit.pruned"
AUDIT_EXPORTED = "audit.exported"
AUDIT_EXPORT_REQUESTED = "audit.export_requested"
AUDIT_EXPORT_COMPLETED = "audit.export_completed"
AUDIT_EXPORT_FAILED = "audit.export_failed"
AUDIT_EXPORT_DOWNLOADED = "audit.export_downloaded"
AUDIT_EXPORT_EXPIRED = "audit.export_expired"

ORG_SETTINGS_CHANGED = "org.settings_changed"

IDP_CREATED = "idp.created"
IDP_UPDATED = "idp.updated"
IDP_DELETED = "idp.deleted"
IDP_DOMAIN_VERIFIED = "idp.domain_verified"
IDP_DOMAIN_CLAIM_REMOVED = "idp.domain_claim_removed"  # another org verified the domain

AGENT_REGISTERED = "agent.registered"
AGENT_UPDATED = "agent.updated"
AGENT_REVOKED = "agent.revoked"
AGENT_RESTORED = "agent.restored"

PROVIDER_CREATED = "provider.created"
PROVIDER_UPDATED = "provider.updated"
PROVIDER_SECRET_ROTATED = "provider.secret_rotated"  # noqa: S105 - an event name

POLICY_CREATED = "policy.created"
POLICY_DELETED = "policy.deleted"

CREDENTIAL_ISSUED = "credential.issued"
CREDENTIAL_DENIED = "credential.denied"
CREDENTIAL_PENDING = "credential.pending_approval"
CREDENTIAL_REVOKED = "credential.revoked"
CREDENTIAL_UPSTREAM_REVOKED = "credential.upstream_revoked"  # outcome success or failure

INTROSPECTION_KEY_CREATED = "introspection_key.created"
INTROSPECTION_KEY_REVOKED = "introspection_key.revoked"

APPROVAL_APPROVED = "approval.approved"
APPROVAL_DENIED = "approval.denied"
APPROVAL_DECISION_REFUSED = "approval.decision_refused"  # e.g. an approver deciding their own request
APPROVAL_EXPIRED = "approval.expired"
APPROVAL_WEBHOOK_SET = "approval.webhook_set"
APPROVAL_WEBHOOK_REMOVED = "approval.webhook_removed"

SIEM_DESTINATION_SET = "siem.destination_set"
SIEM_DESTINATION_REMOVED = "siem.destination_removed"
SIEM_DELIVERY_PARKED = "siem.delivery_parked"  # the org's SIEM refused a batch (4xx): a human must look
SIEM_DELIVERY_RETRIED = "siem.delivery_retried"
