"""A URLconf with a view that crashes, to prove a 500 never leaks a stack trace."""

from django.urls import include, path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from keyward.urls import handler400, handler403, handler404, handler500  # noqa: F401 - same error views


def crash(request):
    raise RuntimeError("database password is hunter2")


@api_view(["GET"])
@permission_classes([AllowAny])
def crash_api(request):
    raise RuntimeError("database password is hunter2")


urlpatterns = [
    path("boom", crash),
    path("boom-api", crash_api),
    path("", include("keyward.urls")),
]
