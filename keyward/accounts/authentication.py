"""`Authorization: Bearer kw_sess_…` for the admin REST API."""

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed


class SessionTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        # DRF imports this class while `rest_framework.views` itself is being imported, so importing
        # the account services here (they use the tenancy scoping hook, a DRF view base) would be circular.
        from keyward.accounts.services import resolve_session

        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <session token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The session token is malformed.") from None
        session = resolve_session(token)
        if session is None:
            raise AuthenticationFailed("The session token is invalid, expired or revoked.")
        return session.account, session

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="keyward"'
