"""JSON endpoints for accounts (/auth/…) and org membership (/v1/admins). Thin: parse, call a service, render."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from keyward.accounts import services
from keyward.accounts.models import Account, Role
from keyward.accounts.serializers import (
    AccountSerializer,
    LoginSerializer,
    MeResponseSerializer,
    OrgSerializer,
    RoleChangeSerializer,
    SessionResponseSerializer,
    SignupConfirmSerializer,
    SignupRequestedSerializer,
    SignupResponseSerializer,
    SignupSerializer,
    TotpCodeSerializer,
    TotpSetupResponseSerializer,
)
from keyward.audit.writer import AuditContext
from keyward.core.net import client_ip
from keyward.core.openapi import errors
from keyward.core.validation import validated
from keyward.tenancy.scoping import OrgScopedViewSet

SIGNUP_REQUESTED_MESSAGE = (
    "If this email can be used, a message with a confirmation token is on its way; "
    "send it to POST /auth/signup/confirm within 24 hours to create the org and sign in."
)


class SignupView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "signup"

    @extend_schema(
        request=SignupSerializer, responses={202: SignupRequestedSerializer, 503: errors("email_unavailable")}
    )
    def post(self, request):
        """Answers the same whether or not the email has an account (no enumeration); see the email."""
        data = validated(SignupSerializer, request.data)
        services.request_signup(ip=client_ip(request), audit_context=AuditContext.from_request(request), **data)
        body = {"status": "confirmation_sent", "message": SIGNUP_REQUESTED_MESSAGE}
        return Response(SignupRequestedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class SignupConfirmView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "signup"

    @extend_schema(
        request=SignupConfirmSerializer,
        responses={201: SignupResponseSerializer, 400: errors("invalid_signup_token"), 409: errors("email_taken")},
    )
    def post(self, request):
        data = validated(SignupConfirmSerializer, request.data)
        issued = services.confirm_signup(
            token=data["token"], ip=client_ip(request), audit_context=AuditContext.from_request(request)
        )
        account = issued.session.account
        body = {"token": issued.token, "expires_at": issued.expires_at, "account": account, "org": account.org}
        return Response(SignupResponseSerializer(body).data, status=status.HTTP_201_CREATED)


class LoginView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: SessionResponseSerializer,
            401: errors("invalid_credentials", "totp_required"),
            429: errors("rate_limited"),
        },
    )
    def post(self, request):
        data = validated(LoginSerializer, request.data)
        issued = services.login(
            email=data["email"],
            password=data["password"],
            totp=data.get("totp") or None,
            ip=client_ip(request),
            audit_context=AuditContext.from_request(request),
        )
        return Response(SessionResponseSerializer({"token": issued.token, "expires_at": issued.expires_at}).data)


class LogoutView(APIView):
    required_role = Role.VIEWER

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        services.logout(request.auth, audit_context=AuditContext.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    required_role = Role.VIEWER

    @extend_schema(responses={200: MeResponseSerializer})
    def get(self, request):
        account, session = request.user, request.auth
        body = {
            "account": AccountSerializer(account).data,
            "org": OrgSerializer(account.org).data if account.org else None,
            "session": {
                "prefix": session.prefix,
                "expires_at": session.expires_at,
                "otp_verified": session.otp_verified,
            },
        }
        return Response(body)


class TotpSetupView(APIView):
    required_role = Role.VIEWER

    @extend_schema(request=None, responses={200: TotpSetupResponseSerializer, 409: errors("totp_already_enabled")})
    def post(self, request):
        enrolment = services.setup_totp(request.user)
        return Response(TotpSetupResponseSerializer(enrolment).data)


class TotpEnableView(APIView):
    required_role = Role.VIEWER

    @extend_schema(
        request=TotpCodeSerializer,
        responses={
            204: None,
            400: errors("invalid_totp_code"),
            409: errors("totp_already_enabled", "totp_not_set_up"),
        },
    )
    def post(self, request):
        code = validated(TotpCodeSerializer, request.data)["code"]
        services.enable_totp(request.user, request.auth, code, audit_context=AuditContext.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpDisableView(APIView):
    required_role = Role.VIEWER

    @extend_schema(
        request=TotpCodeSerializer,
        responses={204: None, 400: errors("invalid_totp_code"), 409: errors("totp_not_enabled")},
    )
    def post(self, request):
        code = validated(TotpCodeSerializer, request.data)["code"]
        services.disable_totp(request.user, request.auth, code, audit_context=AuditContext.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AdminViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet):
    """Org members and their roles (owner only). Addressed by email, case-insensitively."""

    queryset = Account.objects.prefetch_related("totpdevice_set")
    serializer_class = AccountSerializer
    required_role = Role.OWNER
    lookup_field = "email__iexact"
    lookup_url_kwarg = "email"
    # Characters an email address can hold: no slash, space or control character (a NUL would reach
    # PostgreSQL and fail the query), at most 254 of them. Anything else is a 404.
    lookup_value_regex = r"[^/\x00-\x20\x7f-\x9f]{1,254}"

    @extend_schema(request=RoleChangeSerializer, responses={200: AccountSerializer, 409: errors("last_owner")})
    @action(detail=True, methods=["post"])
    def role(self, request, email=None):
        role = validated(RoleChangeSerializer, request.data)["role"]
        account = services.change_role(
            org=self.org,
            target=self.get_object(),
            role=role,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
        )
        return Response(AccountSerializer(account).data)

    @extend_schema(
        responses={204: OpenApiResponse(description="Deactivated; sessions revoked."), 409: errors("last_owner")}
    )
    def destroy(self, request, *args, **kwargs):
        services.deactivate_account(
            org=self.org,
            target=self.get_object(),
            actor=request.user,
            audit_context=AuditContext.from_request(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
