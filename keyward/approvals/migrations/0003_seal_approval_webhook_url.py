"""Seal approval webhook URLs with their secrets (a Slack-style URL is a secret); keep only the host."""

import json
from urllib.parse import urlsplit

from django.db import migrations, models

PURPOSE = "approval_webhook_secret"


def _reseal(apps, to_version: int) -> None:
    """Version 1 sealed the bare secret beside a clear URL; version 2 seals JSON {url, secret}."""
    from keyward.crypto.envelope import Sealed, SealContext, seal, unseal

    ApprovalWebhook = apps.get_model("approvals", "ApprovalWebhook")
    from_version = 1 if to_version == 2 else 2
    for webhook in ApprovalWebhook.objects.select_related("org").select_for_update():
        stored = Sealed(
            ciphertext=bytes(webhook.ciphertext), wrapped_key=bytes(webhook.wrapped_key), kek_id=webhook.kek_id
        )
        context = SealContext(org=webhook.org, purpose=PURPOSE, object_id=webhook.uid, version=from_version)
        plaintext = unseal(stored, context)
        if to_version == 2:
            webhook.host = urlsplit(webhook.url).hostname or ""
            plaintext = json.dumps({"url": webhook.url, "secret": plaintext.decode()}).encode()
        else:
            opened = json.loads(plaintext)
            webhook.url, plaintext = opened["url"], opened["secret"].encode()
        context = SealContext(org=webhook.org, purpose=PURPOSE, object_id=webhook.uid, version=to_version)
        sealed = seal(plaintext, context)
        webhook.ciphertext, webhook.wrapped_key, webhook.kek_id = sealed.ciphertext, sealed.wrapped_key, sealed.kek_id
        webhook.save()


def seal_urls(apps, schema_editor):
    _reseal(apps, to_version=2)


def unseal_urls(apps, schema_editor):
    _reseal(apps, to_version=1)


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_approvalwebhook"),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalwebhook",
            name="host",
            field=models.CharField(default="", max_length=255),
            preserve_default=False,
        ),
        migrations.RunPython(seal_urls, unseal_urls, elidable=False),
        # A default, so rolling back can re-add the column before unseal_urls fills it.
        migrations.AlterField(
            model_name="approvalwebhook", name="url", field=models.CharField(default="", max_length=2000)
        ),
        migrations.RemoveField(model_name="approvalwebhook", name="url"),
    ]
