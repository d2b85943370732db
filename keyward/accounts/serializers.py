"""Request validation and response shapes for accounts. No secret is ever a serializer field."""

from rest_framework import serializers

from keyward.accounts.models import Account, Role
from keyward.tenancy.models import Org


class OrgSerializer(serializers.ModelSerializer):
    class Meta:
        model = Org
        fields = ["id", "name", "slug", "plan", "max_delegation_depth", "max_ttl_seconds", "created_at"]
        read_only_fields = fields


class AccountSerializer(serializers.ModelSerializer):
    totp_enabled = serializers.BooleanField(read_only=True)

    class Meta:
        model = Account
        fields = ["id", "email", "role", "is_active", "totp_enabled", "created_at", "last_login"]
        read_only_fields = fields


class SignupSerializer(serializers.Serializer):
    org_name = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, write_only=True)


class SignupConfirmSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=128, write_only=True)


class SignupRequestedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["confirmation_sent"])
    message = serializers.CharField()


class LoginSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, write_only=True)
    totp = serializers.CharField(max_length=16, required=False, allow_blank=True, write_only=True)


class TotpCodeSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=16, write_only=True)


class RoleChangeSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class SessionResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class SignupResponseSerializer(SessionResponseSerializer):
    account = AccountSerializer()
    org = OrgSerializer()


class MeResponseSerializer(serializers.Serializer):
    account = AccountSerializer()
    org = OrgSerializer(allow_null=True)
    session = serializers.DictField()


class TotpSetupResponseSerializer(serializers.Serializer):
    secret = serializers.CharField()
    otpauth_uri = serializers.CharField()
    qr_svg = serializers.CharField()
