"""The shipped triggers (the cohort → action table and the behaviour examples), created DISABLED from the
"triggers" section of usage/shipped/default.json as it is when the migration runs: an admin reads them,
sets their params (links, words) and turns them on. A trigger that exists is left alone; a later change
of the file reaches an existing database through `manage.py behaviour_definitions load --shipped` (which
restores the shipped state, so they come back disabled)."""

import json
from pathlib import Path

from django.db import migrations

SHIPPED = Path(__file__).resolve().parent.parent.parent / "usage" / "shipped" / "default.json"
#: The triggers this migration ships (later migrations ship their own from the same file).
KEYS = (
    "feature_education", "upgrade_call", "at_risk_retention", "at_risk_cs_outreach", "cross_sell",
    "partner_success_track", "integration_stalled", "export_failures_triage", "integration_next_step",
)  # fmt: skip
DEFAULTS = {
    "description": "", "priority": 0, "audience": "user", "team": "", "follow_up": None, "cap_seconds": None,
    "reentry": "every_time", "transactional": False,
}  # fmt: skip


def ship(apps, schema_editor):
    Trigger = apps.get_model("triggers", "Trigger")
    fields = {field.name for field in Trigger._meta.get_fields()}
    for item in json.loads(SHIPPED.read_text()).get("triggers", []):
        if item["key"] not in KEYS:
            continue
        values = {name: value for name, value in (DEFAULTS | item).items() if name in fields and name != "key"}
        Trigger.objects.get_or_create(key=item["key"], defaults=values | {"enabled": False, "version": 1})


class Migration(migrations.Migration):
    dependencies = [("triggers", "0005_experiments"), ("usage", "0002_shipped_definitions")]

    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
