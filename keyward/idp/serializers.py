import re

from rest_framework import serializers

from keyward.core.validation import FullMatch, StrictFields, StrictSerializer
from keyward.idp.models import SUPPORTED_ALGORITHMS, IdpConnector, IdpEmailDomain

# A domain name, any case, with at most one trailing dot (at most 253 characters as sent).
_DOMAIN_NAME = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
DOMAIN_PATTERN = rf"^{_DOMAIN_NAME}\.?$"
# Tenant routing reads only an email's domain: anything before one `@`, a domain name after it.
ROUTABLE_EMAIL_PATTERN = rf"^[^@\x00]{{1,64}}@{_DOMAIN_NAME}$"
_DOMAIN = re.compile(DOMAIN_PATTERN)


class EmailDomainField(serializers.CharField):
    """A domain name as the schema states it, stored lowercase without its trailing dot."""

    def __init__(self, **kwargs):
        super().__init__(max_length=253, validators=[FullMatch(DOMAIN_PATTERN)], **kwargs)

    def to_internal_value(self, data) -> str:
        domain = super().to_internal_value(data)
        if not domain.isascii() or not _DOMAIN.fullmatch(domain):  # isascii: "\u212a".lower() is "k"
            raise serializers.ValidationError(f"{domain[:100]!r} is not a domain name.")
        return domain.lower().removesuffix(".")


class EmailDomainClaimSerializer(serializers.ModelSerializer):
    """A claimed email domain; it routes sign-ins once verified (`verification_record` at `_keyward.<domain>`)."""

    verified = serializers.BooleanField(read_only=True)
    verification_record = serializers.CharField(read_only=True)

    class Meta:
        model = IdpEmailDomain
        fields = ["domain", "verified", "verification_record"]
        read_only_fields = ["domain"]


def _algorithms_field(**options) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=SUPPORTED_ALGORITHMS),
        min_length=1,
        max_length=len(SUPPORTED_ALGORITHMS),
        **options,
    )


class _ConnectorFields(serializers.ModelSerializer):
    allowed_algorithms = _algorithms_field()

    class Meta:
        model = IdpConnector
        fields = [
            "name",
            "issuer",
            "audience",
            "jwks_uri",
            "discovery_url",
            "allowed_algorithms",
            "email_domains",
            "oidc_client_id",
        ]
        validators: list = []  # uniqueness is the service's rule (a 409 that names no other org)
        extra_kwargs = {"jwks_uri": {"required": False}, "discovery_url": {"required": False}}


class IdpConnectorSerializer(_ConnectorFields):
    """A connector as the API answers it, with each email domain's verification state."""

    allowed_algorithms = _algorithms_field(read_only=True)
    email_domains = EmailDomainClaimSerializer(many=True, read_only=True)

    class Meta(_ConnectorFields.Meta):
        fields = ["id", "kind", *_ConnectorFields.Meta.fields, "created_at", "updated_at"]
        read_only_fields = fields


class IdpConnectorWriteSerializer(StrictFields, _ConnectorFields):
    """What POST and PATCH take: `email_domains` is the full list of domain names to claim."""

    email_domains = serializers.ListField(child=EmailDomainField(), max_length=50, required=False)


class DomainPathSerializer(StrictSerializer):
    domain = EmailDomainField()


class TenantQuerySerializer(StrictSerializer):
    email = serializers.CharField(
        max_length=254, validators=[FullMatch(ROUTABLE_EMAIL_PATTERN, "Enter an email address such as bob@acme.com.")]
    )


class TenantOrgSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class TenantIdpSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    issuer = serializers.CharField()
    oidc_client_id = serializers.CharField()


class TenantSerializer(serializers.Serializer):
    org = TenantOrgSerializer()
    idp = TenantIdpSerializer()
