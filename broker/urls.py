"""Broker routes, included under /v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from broker import api

router = SimpleRouter(trailing_slash=False)
router.register("issued", api.IssuedCredentialViewSet, basename="issued")
router.register("introspection-keys", api.IntrospectionKeyViewSet, basename="introspection-keys")

urlpatterns = [
    path("jwks", api.JwksView.as_view(), name="jwks"),
    path("credentials", api.CredentialsView.as_view(), name="credentials"),
    path("introspect", api.IntrospectView.as_view(), name="introspect"),
    *router.urls,
]
