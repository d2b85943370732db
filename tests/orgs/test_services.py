"""The org-settings rule lives in the service: the API and any other caller get the same bounds."""

import pytest

from keyward.core.exceptions import InvalidRequest
from keyward.orgs import services
from keyward.tenancy.models import Org

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"approval_grant_seconds": 86_401}, "approval_grant_seconds"),
        ({"approval_pending_seconds": 59}, "approval_pending_seconds"),
        ({"approval_denial_seconds": None}, "approval_denial_seconds"),
        ({"approval_denial_seconds": True}, "approval_denial_seconds"),
        ({"audit_retention_days": 0}, "audit_retention_days"),
        ({"max_ttl_seconds": 10}, "max_ttl_seconds"),
    ],
)
def test_out_of_range_or_read_only_settings_are_refused_and_nothing_changes(callers, changes, field):
    before = Org.objects.values().get(pk=callers.org.pk)
    with pytest.raises(InvalidRequest) as refused:
        services.update_settings(callers.org, changes=changes, actor=callers.owner)
    assert field in refused.value.fields
    assert Org.objects.values().get(pk=callers.org.pk) == before


def test_retention_may_be_switched_off_with_null(callers):
    updated = services.update_settings(callers.org, changes={"audit_retention_days": None}, actor=callers.owner)
    assert updated.audit_retention_days is None
