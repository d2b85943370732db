"""The one place org data is scoped. Views, the console and services read org data through here."""

from django.db import models
from rest_framework.viewsets import GenericViewSet

from keyward.core.exceptions import Forbidden
from keyward.tenancy.models import Org


def scope_to_org(queryset: models.QuerySet, org: Org | int, org_field: str = "org") -> models.QuerySet:
    """Restrict `queryset` to one org's rows; rows of any other org simply do not exist (404).

    `org` is a saved Org, or an org id (tasks carry ids). Refuses a missing org: filtering on None
    would select the rows of no org (the platform's).
    """
    if isinstance(org, Org) and org.pk is not None:
        return queryset.filter(**{org_field: org})
    if type(org) is int and org > 0:
        return queryset.filter(**{f"{org_field}_id": org})
    raise TypeError("scope_to_org needs a saved Org or an org id")


def caller_org(user) -> Org:
    """The org a signed-in caller acts for. Platform operators without an org act only where allowed."""
    org = getattr(user, "org", None)
    if org is None:
        raise Forbidden("This account belongs to no org; use an org account for org endpoints.", code="no_org")
    return org


class OrgScopedViewSet(GenericViewSet):
    """Base for every org-scoped admin endpoint.

    `initial` resolves the caller's org once (after authentication and role checks) and
    `get_queryset` scopes every read to it. Writes go through services, which take the org from
    `self.org` (never from the request) and their target from the scoped `get_object()`, so a
    write cannot reach another org's object either.
    """

    org_field = "org"
    org: Org

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.org = caller_org(request.user)

    def get_queryset(self) -> models.QuerySet:
        return scope_to_org(super().get_queryset(), self.org, self.org_field)
