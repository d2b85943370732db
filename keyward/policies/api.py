"""The policy API: /v1/policies (list, create, read, delete) and /v1/policies/simulate. Thin over services.py."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.pagination import IntegerCursorPagination
from keyward.core.validation import validated
from keyward.policies import services
from keyward.policies.models import Policy
from keyward.policies.serializers import (
    PolicyCreateSerializer,
    PolicyListParamsSerializer,
    PolicySerializer,
    SimulateResponseSerializer,
    SimulateSerializer,
)
from keyward.tenancy.scoping import OrgScopedViewSet


class PolicyCursorPagination(IntegerCursorPagination):
    """Oldest first by id (an org may hold thousands of rules)."""

    ordering = "id"
    page_size = 100


class PolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """The org's policy rules (admin): list, create, read, delete, and simulate a decision."""

    queryset = Policy.objects.all()
    serializer_class = PolicySerializer
    pagination_class = PolicyCursorPagination
    required_role = Role.ADMIN
    lookup_value_regex = r"[0-9]+"
    http_method_names = ["get", "post", "delete", "head", "options"]

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = validated(PolicyListParamsSerializer, self.request.query_params)
        params.pop("limit", None)
        params.pop("cursor", None)
        return services.filter_policies(queryset, **params)

    @extend_schema(parameters=[PolicyListParamsSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=PolicyCreateSerializer, responses={201: PolicySerializer})
    def create(self, request, *args, **kwargs):
        data = validated(PolicyCreateSerializer, request.data)
        policy = services.create_policy(
            org=self.org, actor=request.user, audit_context=AuditContext.from_request(request), **data
        )
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.delete_policy(self.get_object(), actor=request.user, audit_context=AuditContext.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=SimulateSerializer, responses={200: SimulateResponseSerializer})
    @action(detail=False, methods=["post"])
    def simulate(self, request):
        data = validated(SimulateSerializer, request.data)
        decision = services.simulate(self.org, **data)
        body = {
            "decision": decision.effect,
            "effect": decision.effect,
            "policy": decision.policy,
            "scope": decision.scope,
            "reason": decision.reason,
        }
        return Response(SimulateResponseSerializer(body).data)
