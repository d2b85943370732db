"""The one place org data is scoped. Views, the console and services read org data through here."""

import logging

from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404
from rest_framework.exceptions import NotFound as DrfNotFound
from rest_framework.viewsets import GenericViewSet

from keyward.core.exceptions import Forbidden, ServiceError
from keyward.tenancy.models import Org
from keyward.tenancy.signals import object_not_found

logger = logging.getLogger(__name__)
MAX_TRACED_LOOKUP = 100


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

    def handle_exception(self, exc):
        """A 404 for an id or name is announced (`object_not_found`), so probes leave a trace."""
        lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        if lookup is not None and hasattr(self, "org") and _is_not_found(exc):
            lookup = str(lookup)[:MAX_TRACED_LOOKUP]
            answers = object_not_found.send_robust(
                sender=type(self),
                request=self.request,
                account=self.request.user,
                org=self.org,
                route=self.basename or type(self).__name__,
                action=self.action or "",
                lookup=lookup,
                owner_org_id=self._owner_org_id(lookup),
            )
            for _, failure in answers:
                if isinstance(failure, Exception):
                    logger.error("a probe trace was not recorded: %s", type(failure).__name__)
        return super().handle_exception(exc)

    def owner_lookup(self, lookup: str) -> dict:
        """How this route finds an object by its URL value (a view with a custom lookup says so)."""
        return {self.lookup_field: lookup}

    def _owner_org_id(self, lookup: str) -> int | None:
        """The org holding the object a 404's lookup names, if any: the one deliberate read across
        orgs, for the trace only. The same one query runs whether or not it exists, so the caller
        cannot time the difference."""
        if self.queryset is None:
            return None
        try:
            rows = self.queryset.model._base_manager.filter(**self.owner_lookup(lookup))
            return rows.values_list(f"{self.org_field}_id", flat=True).first()
        except (ValueError, TypeError, ValidationError):
            return None


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, Http404 | DrfNotFound) or (isinstance(exc, ServiceError) and exc.status_code == 404)
