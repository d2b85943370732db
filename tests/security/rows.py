"""Every database row an org owns, so a test can prove a refused request changed nothing of it."""

from django.apps import apps
from django.db import models

from keyward.tenancy.models import Org


def org_rows(org: Org) -> dict[str, list[dict]]:
    """Rows with a key to `org`, and rows hanging off those (sessions, secrets, domains…), by model.

    Found by walking the models, so a new org-owned model is covered without touching this file.
    """
    owned: dict[str, list[dict]] = {"tenancy.Org": list(Org.objects.filter(pk=org.pk).values())}
    org_models = {}
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, models.ForeignKey) and field.related_model is Org:
                org_models[model] = field.name
    for model, field in org_models.items():
        owned[model._meta.label] = list(model.objects.filter(**{field: org}).order_by("pk").values())
    for model in apps.get_models():
        if model in org_models:
            continue
        for field in model._meta.get_fields():
            if isinstance(field, models.ForeignKey) and field.related_model in org_models:
                lookup = f"{field.name}__{org_models[field.related_model]}"
                rows = model.objects.filter(**{lookup: org}).order_by("pk").values()
                owned[f"{model._meta.label}.{field.name}"] = list(rows)
    return owned
