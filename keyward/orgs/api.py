"""/v1/org: the caller's own org and its settings (owner). Cross-org operator routes live under /v1/orgs/<id>."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.validation import validated
from keyward.orgs import services
from keyward.orgs.serializers import OrgSettingsChangeSerializer, OrgSettingsSerializer
from keyward.tenancy.scoping import caller_org


class OrgSettingsView(APIView):
    required_role = Role.OWNER

    @extend_schema(responses={200: OrgSettingsSerializer})
    def get(self, request):
        return Response(OrgSettingsSerializer(caller_org(request.user)).data)

    @extend_schema(request=OrgSettingsChangeSerializer, responses={200: OrgSettingsSerializer})
    def patch(self, request):
        changes = validated(OrgSettingsChangeSerializer, request.data)
        org = services.update_settings(
            caller_org(request.user),
            changes=changes,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
        )
        return Response(OrgSettingsSerializer(org).data)
