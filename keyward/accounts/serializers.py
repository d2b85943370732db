"""Request validation and response shapes for accounts. No secret is ever a serializer field."""

from rest_framework import serializers

from keyward.accounts.models import Account
from keyward.accounts.services import GRANTABLE_ROLES
from keyward.core.validation import FullMatch, StrictSerializer
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


# What an authenticator app shows (django-otp checks the digits; 6 by default).
TOTP_CODE_PATTERN = r"^[0-9]{6,8}$"
# The password policy's length floor (settings.AUTH_PASSWORD_VALIDATORS), so the schema states it.
MIN_PASSWORD_LENGTH = 12


class SignupSerializer(StrictSerializer):
    org_name = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=1024,
        write_only=True,
        error_messages={
            "min_length": f"This password is too short. It must contain at least {MIN_PASSWORD_LENGTH} characters."
        },
    )


class SignupConfirmSerializer(StrictSerializer):
    token = serializers.CharField(max_length=128, write_only=True)


class SignupRequestedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["confirmation_sent"])
    message = serializers.CharField()


class LoginSerializer(StrictSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=1024, write_only=True)
    totp = serializers.CharField(
        max_length=8, required=False, allow_blank=True, write_only=True, validators=[FullMatch(TOTP_CODE_PATTERN)]
    )


class TotpCodeSerializer(StrictSerializer):
    code = serializers.CharField(max_length=8, write_only=True, validators=[FullMatch(TOTP_CODE_PATTERN)])


class RoleChangeSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=[(role, role.label) for role in GRANTABLE_ROLES])


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
