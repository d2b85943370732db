"""A URLconf with views that crash, to prove a 500 never leaks a stack trace and an outage is a 503."""

from django.core.cache import cache
from django.http import JsonResponse
from django.urls import include, path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from keyward.tenancy.models import Org
from keyward.urls import handler400, handler403, handler404, handler500  # noqa: F401 - same error views


def crash(request):
    raise RuntimeError("database password is hunter2")


@api_view(["GET"])
@permission_classes([AllowAny])
def crash_api(request):
    raise RuntimeError("database password is hunter2")


def count_orgs(request):
    """A plain Django view (no DRF) that needs the database."""
    return JsonResponse({"orgs": Org.objects.count()})


def read_cache(request):
    """A plain Django view (no DRF) that needs the cache."""
    return JsonResponse({"value": cache.get("outage-probe")})


class CacheReadingMiddleware:
    """A middleware that needs the cache before any view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        cache.get("outage-probe")
        return self.get_response(request)


urlpatterns = [
    path("boom", crash),
    path("boom-api", crash_api),
    path("plain-db", count_orgs),
    path("plain-cache", read_cache),
    path("", include("keyward.urls")),
]
