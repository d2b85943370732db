"""Finding 6: with audit inserts failing, the OAuth token endpoint had already been called and its
token was thrown away unrecorded. Now a provider is called only once the audit path is proven
writable, and a token minted for an issuance that then fails is revoked upstream where it can be."""

from unittest import mock

import pytest
from django.db import DatabaseError

from broker import pipeline
from broker.minters import github_app
from broker.models import IssuedCredential, RevocationHandle
from keyward.agents.models import Agent, AgentStatus
from keyward.audit.models import AuditEvent
from keyward.audit.writer import AuditUnavailable
from tests.broker.conftest import last_audit
from tests.broker.minters import setups

pytestmark = pytest.mark.django_db


def test_no_provider_is_called_while_the_audit_log_cannot_be_written(world, stubs):
    oauth = setups.oauth2_client_credentials(world, stubs)
    rows_before = AuditEvent.objects.count()

    with mock.patch.object(AuditEvent, "save", side_effect=DatabaseError("permission denied for table audit")):
        response = oauth.ask(world)

    assert (response.status_code, response.json()["error"]) == (503, "audit_unavailable")
    assert oauth.server.seen == []  # the token endpoint was never called
    assert not IssuedCredential.objects.exists()
    assert AuditEvent.objects.count() == rows_before  # the probe row was rolled back


def test_the_probe_leaves_no_row_and_the_issuance_records_one(world, stubs):
    oauth = setups.oauth2_client_credentials(world, stubs)

    response = oauth.ask(world)

    assert response.status_code == 200, response.content
    assert not AuditEvent.objects.filter(event_type="audit.probe").exists()
    issued = AuditEvent.objects.get(event_type="credential.issued")
    assert issued.seq == AuditEvent.objects.filter(org=world.org).order_by("-seq").first().seq


def test_a_github_token_minted_for_an_issuance_that_then_fails_is_revoked_upstream(world, stubs):
    github = setups.github_app(world, stubs)
    real_record = pipeline.record_event

    def the_issued_row_fails(**kwargs):
        if kwargs["event_type"] == "credential.issued":
            raise AuditUnavailable("The audit log is unavailable, so the action was not performed.")
        return real_record(**kwargs)

    with mock.patch.object(pipeline, "record_event", side_effect=the_issued_row_fails):
        response = github.ask(world)

    assert (response.status_code, response.json()["error"]) == (503, "audit_unavailable")
    assert len(github.fake.issued) == 1
    assert github.fake.revoked == github.fake.issued  # thrown away at GitHub, not only here
    assert not IssuedCredential.objects.exists()
    assert not RevocationHandle.objects.exists()


def test_a_refusal_after_the_mint_revokes_the_token_and_says_so(world, stubs):
    github = setups.github_app(world, stubs)
    real_mint = github_app.mint

    def mint_while_an_admin_revokes(request):
        minted = real_mint(request)
        Agent.objects.filter(pk=request.agent.pk).update(status=AgentStatus.REVOKED)
        return minted

    with mock.patch.object(github_app, "mint", mint_while_an_admin_revokes):
        response = github.ask(world)

    assert (response.status_code, response.json()["error"]) == (403, "agent_revoked")
    assert github.fake.revoked == github.fake.issued != []
    event = last_audit()
    assert (event.reason_code, event.detail["discarded_upstream"]) == ("agent_revoked", True)
