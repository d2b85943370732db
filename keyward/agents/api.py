"""Agents (/v1/agents, admin): idempotent registration, lookup by id or name, revoke and restore."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from keyward.accounts.models import Role
from keyward.agents import services
from keyward.agents.models import AGENT_NAME_PATTERN, Agent
from keyward.agents.serializers import AgentListParamsSerializer, AgentRegistrationSerializer, AgentSerializer
from keyward.audit.writer import AuditContext
from keyward.core.validation import validated
from keyward.tenancy.scoping import OrgScopedViewSet

AGENT_PATH_PARAMETER = OpenApiParameter(
    "agent", str, OpenApiParameter.PATH, description="The agent's numeric id, or else its name."
)


@extend_schema_view(
    list=extend_schema(parameters=[AgentListParamsSerializer]),
    retrieve=extend_schema(parameters=[AGENT_PATH_PARAMETER]),
)
class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    queryset = Agent.objects.all()
    serializer_class = AgentSerializer
    required_role = Role.ADMIN
    lookup_url_kwarg = "agent"
    # An id is digits, which the name grammar allows too; anything else (a NUL, "²") never reaches the database.
    lookup_value_regex = AGENT_NAME_PATTERN.removeprefix("^").removesuffix("$")

    def get_queryset(self):
        agents = super().get_queryset()
        if self.action == "list":
            params = validated(AgentListParamsSerializer, self.request.query_params)
            if "status" in params:
                agents = agents.filter(status=params["status"])
        return agents

    def get_object(self) -> Agent:
        return services.get_agent(self.org, self.kwargs[self.lookup_url_kwarg])

    def owner_lookup(self, lookup: str) -> dict:
        return {"pk": int(lookup)} if lookup.isdigit() else {"name": lookup}

    @extend_schema(
        request=AgentRegistrationSerializer,
        responses={
            201: OpenApiResponse(AgentSerializer, description="A new agent was registered."),
            200: OpenApiResponse(AgentSerializer, description="The agent existed and was updated."),
        },
    )
    def create(self, request, *args, **kwargs):
        registration = services.register_agent(
            org=self.org,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **validated(AgentRegistrationSerializer, request.data),
        )
        answer = status.HTTP_201_CREATED if registration.created else status.HTTP_200_OK
        return Response(AgentSerializer(registration.agent).data, status=answer)

    @extend_schema(request=None, responses={200: AgentSerializer}, parameters=[AGENT_PATH_PARAMETER])
    @action(detail=True, methods=["post"])
    def revoke(self, request, agent=None):
        revoked = services.revoke_agent(
            self.get_object(), actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(AgentSerializer(revoked).data)

    @extend_schema(request=None, responses={200: AgentSerializer}, parameters=[AGENT_PATH_PARAMETER])
    @action(detail=True, methods=["post"])
    def restore(self, request, agent=None):
        restored = services.restore_agent(
            self.get_object(), actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(AgentSerializer(restored).data)
