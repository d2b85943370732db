"""Agent-facing routes (POST /v1/credentials, /v1/jwks) arrive with the broker issue."""

urlpatterns: list = []
