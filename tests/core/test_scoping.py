"""The one org-scoping hook: every org-data read goes through `scope_to_org`, which fails closed."""

import pytest

from keyward.audit.models import AuditEvent
from keyward.audit.services import events_of
from keyward.tenancy.models import Org
from keyward.tenancy.scoping import scope_to_org
from tests.factories import make_audit_events, make_org

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "org",
    [None, Org(name="unsaved", slug="unsaved"), 0, -1, True, "1", 1.0],
    ids=["none", "unsaved", "zero", "negative", "bool", "str", "float"],
)
def test_scoping_to_no_org_is_refused_rather_than_selecting_the_platform_rows(org):
    """`filter(org=None)` would select the rows of no org, i.e. the platform chain."""
    make_audit_events(None, 2)
    with pytest.raises(TypeError):
        scope_to_org(AuditEvent.objects.all(), org)


def test_an_orgs_audit_rows_are_read_through_the_scoping_hook():
    mine, other = make_org(), make_org()
    make_audit_events(mine, 2)
    make_audit_events(other, 3)
    make_audit_events(None, 1)
    assert events_of(mine).count() == 2
    assert events_of(None).count() == 1


def test_an_org_id_scopes_like_the_org():
    """Tasks carry ids: scoping by id selects exactly the org's rows."""
    mine, other = make_org(), make_org()
    make_audit_events(mine, 2)
    make_audit_events(other, 3)
    make_audit_events(None, 1)
    by_id = scope_to_org(AuditEvent.objects.all(), mine.pk)
    assert list(by_id.values_list("pk", flat=True)) == list(events_of(mine).values_list("pk", flat=True))
