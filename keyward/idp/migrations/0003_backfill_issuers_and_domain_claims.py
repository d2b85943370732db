"""Existing data under the new rules: issuer ownership rows, and every domain claim unverified.

An issuer whose connectors all belong to one org becomes that org's. An issuer configured in
several orgs gets no owner: its tokens are refused until the operator lists it in
KEYWARD_SHARED_ISSUERS (a multi-tenant IdP) or removes the connectors that should not be there.
Domain claims were never proven, so each starts unverified with its own verification token.
"""

import secrets

from django.db import migrations


def backfill(apps, schema_editor):
    IdpConnector = apps.get_model("idp", "IdpConnector")
    IdpIssuer = apps.get_model("idp", "IdpIssuer")
    IdpEmailDomain = apps.get_model("idp", "IdpEmailDomain")

    orgs_by_issuer: dict[str, set[int]] = {}
    for issuer, org_id in IdpConnector.objects.values_list("issuer", "org_id"):
        orgs_by_issuer.setdefault(issuer, set()).add(org_id)
    IdpIssuer.objects.bulk_create(
        IdpIssuer(issuer=issuer, org_id=next(iter(org_ids)))
        for issuer, org_ids in sorted(orgs_by_issuer.items())
        if len(org_ids) == 1
    )

    for claim in IdpEmailDomain.objects.select_related("connector").iterator():
        claim.org_id = claim.connector.org_id
        claim.verification_token = secrets.token_urlsafe(24)
        claim.verified_at = None
        claim.save(update_fields=["org", "verification_token", "verified_at"])


class Migration(migrations.Migration):
    dependencies = [("idp", "0002_issuer_ownership_and_domain_verification")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
