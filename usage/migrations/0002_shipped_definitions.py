"""The shipped cohorts and stages (CONTRACT §8) as editable data, from usage/shipped/default.json as it is
when the migration runs: a new database gets the current defaults; an existing one takes later changes of the
file through `manage.py behaviour_definitions load --shipped`. Definitions that exist are left alone."""

import json
from pathlib import Path

from django.db import migrations

SHIPPED = Path(__file__).resolve().parent.parent / "shipped" / "default.json"


def load(apps, schema_editor):
    document = json.loads(SHIPPED.read_text())
    for kind, name in (("cohorts", "Cohort"), ("stages", "Stage")):
        model = apps.get_model("usage", name)
        for item in document[kind]:
            defaults = {
                "name": item["name"],
                "description": item.get("description", ""),
                "condition": item["condition"],
                "enabled": item.get("enabled", True),
            }
            if kind == "stages":
                defaults["order"] = item["order"]
            model.objects.get_or_create(key=item["key"], defaults=defaults)


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
