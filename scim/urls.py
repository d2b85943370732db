"""SCIM 2.0 routes (/scim/v2/Users) arrive with the SCIM issue."""

urlpatterns: list = []
