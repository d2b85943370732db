import re

from rest_framework import serializers

from keyward.idp.models import SUPPORTED_ALGORITHMS, IdpConnector

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class EmailDomainField(serializers.CharField):
    def to_internal_value(self, data) -> str:
        domain = super().to_internal_value(data).strip().lower().rstrip(".")
        if not _DOMAIN.match(domain):
            raise serializers.ValidationError(f"{domain!r} is not a domain name.")
        return domain


class IdpConnectorSerializer(serializers.ModelSerializer):
    allowed_algorithms = serializers.ListField(
        child=serializers.ChoiceField(choices=SUPPORTED_ALGORITHMS), min_length=1, max_length=len(SUPPORTED_ALGORITHMS)
    )
    email_domains = serializers.ListField(
        child=EmailDomainField(max_length=253), max_length=50, required=False, write_only=True
    )

    class Meta:
        model = IdpConnector
        fields = [
            "id",
            "name",
            "kind",
            "issuer",
            "audience",
            "jwks_uri",
            "discovery_url",
            "allowed_algorithms",
            "email_domains",
            "oidc_client_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "kind", "created_at", "updated_at"]
        validators: list = []  # uniqueness is the service's rule (a 409 that names no other org)
        extra_kwargs = {"jwks_uri": {"required": False}, "discovery_url": {"required": False}}

    def to_representation(self, instance: IdpConnector) -> dict:
        data = super().to_representation(instance)
        data["email_domains"] = [row.domain for row in instance.email_domains.all()]
        return data
