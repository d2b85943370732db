"""Root URLs. The only place `keyward` touches the outer apps (broker, console, scim)."""

from django.urls import include, path

from keyward.core import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("auth/", include("keyward.accounts.urls")),
    path("auth/", include("keyward.idp.urls")),
    path("v1/", include("broker.urls")),
    path("v1/", include("keyward.api_urls")),
    path("scim/v2/", include("scim.urls")),
    path("", include("console.urls")),
]

handler400 = "keyward.core.errors.bad_request"
handler403 = "keyward.core.errors.permission_denied"
handler404 = "keyward.core.errors.not_found"
handler500 = "keyward.core.errors.server_error"
