"""The audit API: /v1/audit (list), /v1/audit/export (stream), /v1/audit/prune. Thin over services.py."""

from types import SimpleNamespace

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from keyward.accounts.models import Role
from keyward.audit import services
from keyward.audit.export import stream_csv, stream_json
from keyward.audit.models import AuditEvent, Outcome
from keyward.audit.serializers import (
    AuditEventSerializer,
    AuditListParamsSerializer,
    ExportParamsSerializer,
    PruneResponseSerializer,
    PruneSerializer,
)
from keyward.audit.writer import AuditContext
from keyward.core.pagination import IntegerCursorPagination
from keyward.core.validation import validated
from keyward.tenancy.scoping import OrgScopedViewSet

NEXT_SINCE_HEADER = "X-Keyward-Next-Since"
EXPORT_CONTENT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


class FormatParameterIsOurs(DefaultContentNegotiation):
    """`?format=` picks the export format here; it is not DRF's renderer override (which would 404)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class AuditCursorPagination(IntegerCursorPagination):
    """Newest first by seq."""

    ordering = "-seq"
    page_size = 50


_LIST_PARAMETERS = [
    OpenApiParameter("agent", str, description="Agent name (exact)."),
    OpenApiParameter("event", str, description="Event type (exact), e.g. account.login_failed."),
    OpenApiParameter("outcome", str, enum=Outcome.values),
    OpenApiParameter("end_user", str, description="End user (exact)."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO 8601; rows at or after this time."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO 8601; rows before this time."),
]


class AuditViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """The org's audit log: read (viewer), export (viewer), prune (admin)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    pagination_class = AuditCursorPagination
    content_negotiation_class = FormatParameterIsOurs
    required_role = Role.VIEWER
    action_roles = {"prune": Role.ADMIN}

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = validated(AuditListParamsSerializer, self.request.query_params)
        params.pop("limit", None)
        params.pop("cursor", None)
        return services.filter_events(queryset, **params)

    @extend_schema(parameters=_LIST_PARAMETERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["json", "csv"], description="Body format (default json)."),
            OpenApiParameter("since", int, description="Export rows with seq greater than this (default 0)."),
            OpenApiParameter(
                NEXT_SINCE_HEADER,
                int,
                OpenApiParameter.HEADER,
                response=True,
                description="Present when more rows remain: pass it as `since` for the next page.",
            ),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                {"type": "array", "items": {"type": "object"}},
                description="A JSON array of rows (canonical fields plus `hash`), one per line.",
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV with a header row."),
        },
    )
    @action(detail=False, methods=["get"])
    def export(self, request):
        """Up to 50,000 rows after `since`, streamed; `X-Keyward-Next-Since` says where the next page starts."""
        params = validated(ExportParamsSerializer, request.query_params)
        window = services.export_window(self.org, params["since"])
        body = stream_csv(window.rows) if params["format"] == "csv" else stream_json(window.rows)
        response = StreamingHttpResponse(body, content_type=EXPORT_CONTENT_TYPES[params["format"]])
        filename = f"audit-{self.org.slug}-after-{params['since']}.{params['format']}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        if window.next_since is not None:
            response[NEXT_SINCE_HEADER] = str(window.next_since)
        return response

    @extend_schema(request=PruneSerializer, responses={200: PruneResponseSerializer})
    @action(detail=False, methods=["post"])
    def prune(self, request):
        """Delete rows older than `days`, keeping the remaining chain verifiable; audited itself."""
        days = validated(PruneSerializer, request.data)["days"]
        deleted = services.prune(
            org=self.org, days=days, actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(PruneResponseSerializer({"deleted": deleted}).data)
