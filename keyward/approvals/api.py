"""/v1/approvals: the human-in-the-loop queue (admin), and the org's approval webhook."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from keyward.accounts.models import Role
from keyward.approvals import decisions
from keyward.approvals.models import Approval, ApprovalWebhook
from keyward.approvals.serializers import (
    ApprovalFilterSerializer,
    ApprovalSerializer,
    DecisionSerializer,
    WebhookSerializer,
    WebhookStateSerializer,
)
from keyward.audit.writer import AuditContext
from keyward.core.exceptions import NotFound
from keyward.core.openapi import errors
from keyward.core.pagination import DateTimeCursorPagination
from keyward.core.validation import validated
from keyward.tenancy.scoping import OrgScopedViewSet

DECISION_RESPONSES = {
    200: ApprovalSerializer,
    403: errors("self_approval"),
    409: errors("approval_already_decided", "approval_expired"),
}


class ApprovalCursorPagination(DateTimeCursorPagination):
    """Newest first. Agents open approvals, so the queue grows without bound and must be paged."""

    ordering = "-created_at"
    page_size = 50


class ApprovalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    queryset = Approval.objects.select_related("agent")
    serializer_class = ApprovalSerializer
    pagination_class = ApprovalCursorPagination
    required_role = Role.ADMIN
    lookup_value_regex = "apr_[0-9a-f]{1,64}"

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list" and (
            state := validated(ApprovalFilterSerializer, self.request.query_params).get("status")
        ):
            queryset = queryset.filter(status=state)
        return queryset

    @extend_schema(parameters=[ApprovalFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _decide(self, request, *, approve: bool) -> Response:
        reason = validated(DecisionSerializer, request.data)["reason"]
        approval = decisions.decide(
            self.get_object(),
            approve=approve,
            actor=request.user,
            reason=reason,
            audit_context=AuditContext.from_request(request),
        )
        return Response(ApprovalSerializer(approval).data)

    @extend_schema(request=DecisionSerializer, responses=DECISION_RESPONSES)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, approve=True)

    @extend_schema(request=DecisionSerializer, responses=DECISION_RESPONSES)
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None):
        return self._decide(request, approve=False)

    @extend_schema(methods=["GET"], responses={200: WebhookStateSerializer, 404: errors("no_webhook")})
    @extend_schema(methods=["PUT"], request=WebhookSerializer, responses={200: WebhookStateSerializer})
    @extend_schema(methods=["DELETE"], responses={204: None})
    @action(detail=False, methods=["get", "put", "delete"])
    def webhook(self, request):
        context = AuditContext.from_request(request)
        if request.method == "PUT":
            data = validated(WebhookSerializer, request.data)
            webhook = decisions.set_webhook(self.org, actor=request.user, audit_context=context, **data)
            return Response(WebhookStateSerializer(webhook).data)
        if request.method == "DELETE":
            decisions.remove_webhook(self.org, actor=request.user, audit_context=context)
            return Response(status=status.HTTP_204_NO_CONTENT)
        webhook = ApprovalWebhook.objects.filter(org=self.org).first()
        if webhook is None:
            raise NotFound("No approval webhook is configured.", code="no_webhook")
        return Response(WebhookStateSerializer(webhook).data)
