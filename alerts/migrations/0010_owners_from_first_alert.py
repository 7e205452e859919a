"""Customers routed before owners were kept (workspaces/0004) get, as their owner, the rep their first
rep alert went to: the rule routing followed for them then. The Salesforce pilot, which sits below the
alerts, reads owners from the workspace alone after this."""

from django.db import migrations

WHY = "The rep its first alert went to (kept when owners began to be kept)"


def backfill(apps, schema_editor):
    Alert = apps.get_model("alerts", "Alert")
    Workspace = apps.get_model("workspaces", "Workspace")
    unowned = Workspace.objects.filter(owner__isnull=True)
    first_alerts = (
        Alert.objects.filter(audience="rep", recipient__isnull=False, workspace_key__in=unowned.values("workspace_id"))
        .order_by("workspace_key", "created_at", "pk")
        .values_list("workspace_key", "recipient_id", "created_at")
    )
    chosen = {}
    for key, recipient_id, created_at in first_alerts.iterator(chunk_size=2000):
        chosen.setdefault(key, (recipient_id, created_at))
    for key, (recipient_id, created_at) in chosen.items():
        unowned.filter(workspace_id=key).update(owner_id=recipient_id, owner_since=created_at, owner_why=WHY)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0009_error_alerts_schedule"),
        ("workspaces", "0006_reviewitem_from_linking"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
