"""Teach drf-spectacular how the broker's routes authenticate, so the OpenAPI schema says it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import ResolvedComponent

from broker import parsing
from keyward.core.openapi import KeywardAutoSchema
from keyward.jose.verify import MAX_TOKEN_BYTES

# A token in a header, as broker/parsing.py takes it: something besides spaces, at most MAX_TOKEN_BYTES.
TOKEN_HEADER_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_TOKEN_BYTES,
    "pattern": parsing.TOKEN_HEADER_PATTERN,
}

# POST /v1/credentials authenticates the human behind the agent, or the delegation chain: one of the two.
BROKER_SECURITY_SCHEMES = {
    "endUserToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The end user's identity token from the org's IdP (`Authorization: Bearer …`, at most "
        f"{MAX_TOKEN_BYTES} characters).",
    },
    "delegationToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Keyward-Delegation",
        "description": "A delegation token from an earlier answer's `delegation.token` (at most "
        f"{MAX_TOKEN_BYTES} characters); it replaces the end-user token: send one of the two, never both.",
    },
}


class IntrospectionKeyScheme(OpenApiAuthenticationExtension):
    target_class = "broker.api.IntrospectionKeyAuthentication"
    name = "introspectionKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A `kw_intro_…` key from /v1/introspection-keys."}


class CredentialsSchema(KeywardAutoSchema):
    """The broker checks its callers itself (broker/callers.py), not through a DRF authenticator."""

    def get_auth(self) -> list[dict]:
        for name, definition in BROKER_SECURITY_SCHEMES.items():
            self.registry.register_on_missing(
                ResolvedComponent(name=name, type=ResolvedComponent.SECURITY_SCHEMA, object=name, schema=definition)
            )
        return [{name: []} for name in BROKER_SECURITY_SCHEMES]
