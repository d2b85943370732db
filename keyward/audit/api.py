"""The audit API: /v1/audit (list), /v1/audit/export (stream), /v1/audit/prune, /v1/audit/exports (async).

Thin over services.py and exports.py.
"""

from types import SimpleNamespace

from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from keyward.accounts.models import Role
from keyward.audit import exports, services
from keyward.audit.export import stream_csv, stream_json
from keyward.audit.models import AuditEvent, AuditExport, ExportFormat
from keyward.audit.serializers import (
    AuditEventSerializer,
    AuditListParamsSerializer,
    DownloadParamsSerializer,
    ExportCreatedSerializer,
    ExportParamsSerializer,
    ExportRequestSerializer,
    ExportStatusSerializer,
    PruneResponseSerializer,
    PruneSerializer,
)
from keyward.audit.writer import AuditContext
from keyward.core.openapi import errors
from keyward.core.pagination import IntegerCursorPagination
from keyward.core.validation import validated
from keyward.tenancy.scoping import OrgScopedViewSet

NEXT_SINCE_HEADER = "X-Keyward-Next-Since"
EXPORT_CONTENT_TYPES = {ExportFormat.JSON: "application/json", ExportFormat.CSV: "text/csv; charset=utf-8"}


class FormatParameterIsOurs(DefaultContentNegotiation):
    """`?format=` picks the export format here; it is not DRF's renderer override (which would 404)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class AuditCursorPagination(IntegerCursorPagination):
    """Newest first by seq."""

    ordering = "-seq"
    page_size = 50


class AuditViewSet(mixins.ListModelMixin, OrgScopedViewSet):
    """The org's audit log: read (viewer), export (viewer), prune (admin)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    pagination_class = AuditCursorPagination
    content_negotiation_class = FormatParameterIsOurs
    required_role = Role.VIEWER
    action_roles = {"prune": Role.OWNER}  # deleting history is an owner's act

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = validated(AuditListParamsSerializer, self.request.query_params)
        params.pop("limit", None)
        params.pop("cursor", None)
        return services.filter_events(queryset, **params)

    @extend_schema(parameters=[AuditListParamsSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            ExportParamsSerializer,
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
        window = services.export_window(
            self.org,
            params["since"],
            export_format=params["format"],
            actor=request.user,
            audit_context=AuditContext.from_request(request),
        )
        body = stream_csv(window.rows) if params["format"] == ExportFormat.CSV else stream_json(window.rows)
        response = StreamingHttpResponse(body, content_type=EXPORT_CONTENT_TYPES[params["format"]])
        filename = f"audit-{self.org.slug}-after-{params['since']}.{params['format']}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        if window.next_since is not None:
            response[NEXT_SINCE_HEADER] = str(window.next_since)
        return response

    @extend_schema(request=PruneSerializer, responses={200: PruneResponseSerializer, 409: errors("audit_chain_broken")})
    @action(detail=False, methods=["post"])
    def prune(self, request):
        """Delete rows older than `days` that every SIEM has received; the chain stays verifiable; audited."""
        days = validated(PruneSerializer, request.data)["days"]
        result = services.prune(
            org=self.org, days=days, actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(PruneResponseSerializer(result).data)


class AuditExportViewSet(OrgScopedViewSet):
    """Background exports of the org's audit log (viewer): request one, then poll it for a link."""

    queryset = AuditExport.objects.all()
    serializer_class = ExportStatusSerializer
    required_role = Role.VIEWER
    lookup_value_regex = "exp_[0-9a-f]{32}"

    @extend_schema(
        request=ExportRequestSerializer,
        responses={202: ExportCreatedSerializer, 429: errors("too_many_exports")},
        description="Queue an export of rows `since < seq <= until` (seqs; `until` defaults to the last row now).",
    )
    def create(self, request):
        params = validated(ExportRequestSerializer, request.data)
        export = exports.request_export(
            self.org, actor=request.user, audit_context=AuditContext.from_request(request), **params
        )
        location = reverse("audit-exports-detail", kwargs={"pk": export.pk})
        return Response(
            ExportCreatedSerializer({"export_id": export.pk}).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": location},
        )

    def retrieve(self, request, *args, **kwargs):
        export = self.get_object()
        link = exports.download_link(export, request.user)
        response = Response(self.get_serializer(export, context={**self.get_serializer_context(), "link": link}).data)
        response["Cache-Control"] = "no-store"  # the link is a bearer credential for the file
        return response


class FirstRenderer(BaseContentNegotiation):
    """The download answers a file whatever `Accept` says; errors are JSON like everywhere else."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AuditExportDownloadView(APIView):
    """GET /v1/audit/exports/<id>/download?sig=…: the signature alone authorises it (no session)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    content_negotiation_class = FirstRenderer

    @extend_schema(
        parameters=[DownloadParamsSerializer],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.BINARY, description="The export file."),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The export file."),
            403: errors("invalid_signature"),
            409: errors("export_not_ready"),
            410: errors("link_expired", "export_expired"),
        },
    )
    def get(self, request, export_id: str):
        signature = validated(DownloadParamsSerializer, request.query_params)["sig"]
        download = exports.open_download(export_id, signature, audit_context=AuditContext.from_request(request))
        response = FileResponse(
            download.file,
            as_attachment=True,
            filename=download.filename,
            content_type=EXPORT_CONTENT_TYPES[download.export.format],
        )
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response
