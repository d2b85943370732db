"""0003 seals webhook URLs that earlier versions stored in clear, without losing a working webhook."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from keyward.approvals.models import ApprovalWebhook
from keyward.crypto.envelope import SealContext, seal
from tests.factories import make_org

BEFORE = [("approvals", "0002_approvalwebhook")]
SLACK_URL = "https://hooks.slack.example/services/T000/B000/very-secret-path-token"
SECRET = "whsec-0123456789abcdef"


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_a_webhook_stored_before_0003_keeps_working_with_its_url_sealed():
    org = make_org()
    old_apps = migrate(BEFORE).loader.project_state(BEFORE).apps
    OldWebhook = old_apps.get_model("approvals", "ApprovalWebhook")
    webhook = OldWebhook(org_id=org.pk, url=SLACK_URL, secret_fingerprint="f" * 16)
    sealed = seal(
        SECRET.encode(), SealContext(org=org, purpose="approval_webhook_secret", object_id=webhook.uid, version=1)
    )
    webhook.ciphertext, webhook.wrapped_key, webhook.kek_id = sealed.ciphertext, sealed.wrapped_key, sealed.kek_id
    webhook.save()

    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())

    migrated = ApprovalWebhook.objects.get(org=org)
    assert migrated.unseal_destination() == (SLACK_URL, SECRET)
    assert migrated.host == "hooks.slack.example"
    columns = {
        column.name
        for column in connection.introspection.get_table_description(connection.cursor(), "approvals_approvalwebhook")
    }
    assert "url" not in columns
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM approvals_approvalwebhook")
        stored = repr(cursor.fetchall())
    assert "very-secret-path-token" not in stored


@pytest.mark.django_db(transaction=True)
def test_0003_can_be_rolled_back_without_losing_the_webhook():
    from keyward.approvals import decisions
    from keyward.crypto.envelope import Sealed, unseal

    org = make_org()
    decisions.set_webhook(org, url=SLACK_URL, secret=SECRET)
    old_apps = migrate(BEFORE).loader.project_state(BEFORE).apps
    try:
        webhook = old_apps.get_model("approvals", "ApprovalWebhook").objects.get(org_id=org.pk)
        stored = Sealed(bytes(webhook.ciphertext), bytes(webhook.wrapped_key), webhook.kek_id)
        context = SealContext(org=org, purpose="approval_webhook_secret", object_id=webhook.uid, version=1)
        assert webhook.url == SLACK_URL
        assert unseal(stored, context) == SECRET.encode()
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert ApprovalWebhook.objects.get(org=org).unseal_destination() == (SLACK_URL, SECRET)
