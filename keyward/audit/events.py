"""Event type names written to the audit log. Features add theirs here, so names stay unique."""

ACCOUNT_SIGNUP = "account.signup"
ACCOUNT_LOGIN = "account.login"
ACCOUNT_LOGIN_FAILED = "account.login_failed"
ACCOUNT_LOGOUT = "account.logout"
ACCOUNT_2FA_ENABLED = "account.2fa_enabled"
ACCOUNT_2FA_DISABLED = "account.2fa_disabled"
ACCOUNT_ROLE_CHANGED = "account.role_changed"
ACCOUNT_DEACTIVATED = "account.deactivated"
ACCOUNT_SUPERADMIN_CREATED = "account.superadmin_created"

AUDIT_PRUNED = "audit.pruned"

IDP_CREATED = "idp.created"
IDP_UPDATED = "idp.updated"
IDP_DELETED = "idp.deleted"
