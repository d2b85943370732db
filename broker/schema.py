"""Teach drf-spectacular how /v1/introspect authenticates, so the OpenAPI page shows it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class IntrospectionKeyScheme(OpenApiAuthenticationExtension):
    target_class = "broker.api.IntrospectionKeyAuthentication"
    name = "introspectionKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A `kw_intro_…` key from /v1/introspection-keys."}
