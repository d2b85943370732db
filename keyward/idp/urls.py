from django.urls import path

from keyward.idp import api

urlpatterns = [path("tenant", api.TenantView.as_view(), name="auth-tenant")]
