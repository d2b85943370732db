"""Who is told about a waiting approval, and what they are told."""

import pytest
from django.core import mail

from keyward.accounts.models import Role
from keyward.idp.dev import issue_dev_user_token
from tests.approvals.conftest import WRITE
from tests.factories import make_account

pytestmark = pytest.mark.django_db


def ask_as(parked, subject: str, capture, email: str | None = None) -> None:
    mail.outbox.clear()
    with capture(execute=True):
        answer = parked.ask(WRITE, token=issue_dev_user_token(parked.org, subject=subject, email=email))
    assert answer.status_code == 202


@pytest.mark.parametrize("subject", ["Dana@Example.com", " dana@example.com"])
def test_the_requester_is_never_emailed_whatever_the_case_of_their_subject(
    callers, parked, django_capture_on_commit_callbacks, subject
):
    make_account(callers.org, Role.ADMIN, email="dana@example.com")
    ask_as(parked, subject, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    assert set(mail.outbox[0].to) == {callers.admin.email, callers.owner.email}


def test_only_active_admins_and_owners_of_the_org_are_emailed(callers, parked, django_capture_on_commit_callbacks):
    make_account(callers.org, Role.ADMIN, email="gone@example.com", is_active=False)
    make_account(None, Role.SUPERADMIN, email="root@example.com")
    ask_as(parked, "erin@example.com", django_capture_on_commit_callbacks)
    assert set(mail.outbox[0].to) == {callers.admin.email, callers.owner.email}
    assert callers.viewer.email not in mail.outbox[0].to
    assert callers.other_org.email not in mail.outbox[0].to


def test_the_requester_is_not_emailed_when_their_subject_is_opaque(callers, parked, django_capture_on_commit_callbacks):
    make_account(callers.org, Role.ADMIN, email="dana@example.com")
    ask_as(parked, "00u1danaOktaId", django_capture_on_commit_callbacks, email="Dana@example.com")
    assert set(mail.outbox[0].to) == {callers.admin.email, callers.owner.email}
