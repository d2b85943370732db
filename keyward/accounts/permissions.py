"""Role gate for the admin API. A view that names no role is closed to everyone (fail closed)."""

from rest_framework.permissions import BasePermission

from keyward.accounts.models import ROLE_RANK, Role


def required_role(view) -> str | None:
    """The role an action needs: `action_roles[action]`, else the view's `required_role`."""
    action_roles = getattr(view, "action_roles", {})
    action = getattr(view, "action", None)
    if action in action_roles:
        return action_roles[action]
    return getattr(view, "required_role", None)


class HasRequiredRole(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        role = required_role(view)
        return role is not None and user.has_role(role)

    def openapi_errors(self, view) -> dict[int, list[str]]:
        """The refusals this gate can answer on `view`, for the OpenAPI schema (keyward.core.openapi)."""
        from keyward.tenancy.scoping import OrgScopedViewSet  # DRF imports this module while scoping imports DRF

        role = required_role(view)
        codes = [] if role is not None and ROLE_RANK[role] == ROLE_RANK[Role.VIEWER] else ["forbidden"]
        # A platform operator has no org: every org route refuses it, and every route above viewer is one.
        if codes or isinstance(view, OrgScopedViewSet):
            codes.append("no_org")
        return {403: codes} if codes else {}
