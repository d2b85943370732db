"""Agent-facing routes, included under /v1/."""

from django.urls import path

from broker.api import JwksView

urlpatterns = [
    path("jwks", JwksView.as_view(), name="jwks"),
]
