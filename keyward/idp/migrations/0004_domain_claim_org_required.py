import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("idp", "0003_backfill_issuers_and_domain_claims")]

    operations = [
        migrations.AlterField(
            model_name="idpemaildomain",
            name="org",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="idp_email_domains", to="tenancy.org"
            ),
        ),
    ]
