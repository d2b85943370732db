"""The one place org data is scoped. Views, the console and services read org data through here."""

from django.db import models, transaction
from rest_framework.viewsets import GenericViewSet

from keyward.core.exceptions import Forbidden
from keyward.tenancy.models import Org


def scope_to_org(queryset: models.QuerySet, org: Org, org_field: str = "org") -> models.QuerySet:
    """Restrict `queryset` to one org's rows; rows of any other org simply do not exist (404)."""
    return queryset.filter(**{org_field: org})


def caller_org(user) -> Org:
    """The org a signed-in caller acts for. Platform operators without an org act only where allowed."""
    org = getattr(user, "org", None)
    if org is None:
        raise Forbidden("This account belongs to no org; use an org account for org endpoints.", code="no_org")
    return org


class OrgScopedViewSet(GenericViewSet):
    """Base for every org-scoped admin endpoint.

    `initial` resolves the caller's org once (after authentication and role checks);
    `get_queryset` scopes every read to it; writes are re-checked before they commit.
    """

    org_field = "org"
    org: Org

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.org = caller_org(request.user)

    def get_queryset(self) -> models.QuerySet:
        return scope_to_org(super().get_queryset(), self.org, self.org_field)

    def perform_create(self, serializer) -> None:
        with transaction.atomic():
            self.ensure_in_org(serializer.save(**{self.org_field: self.org}))

    def perform_update(self, serializer) -> None:
        with transaction.atomic():
            self.ensure_in_org(serializer.save())

    def ensure_in_org(self, instance: models.Model) -> None:
        """Refuse (and roll back) a write that left an object outside the caller's org."""
        if getattr(instance, f"{self.org_field}_id") != self.org.pk:
            raise Forbidden("The object does not belong to your org.", code="cross_org_write")
