"""The ledger moves to failures and the traffic rollup to events, with their tables; ops keeps only its dashboard permission."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("events", "0005_sourceday_from_ops"),
        ("failures", "0001_initial"),
        ('ops', '0005_prune_task_results_schedule'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            # The dashboard's permission is a proxy of the heartbeat table: re-based on its new home.
            migrations.DeleteModel(name="Dashboard"),
            migrations.RemoveField(
                model_name='errorkind',
                name='last_object_type',
            ),
            migrations.DeleteModel(
                name='Heartbeat',
            ),
            migrations.DeleteModel(
                name='RollupCursor',
            ),
            migrations.DeleteModel(
                name='SourceDay',
            ),
            migrations.DeleteModel(
                name='ErrorKind',
            ),
            migrations.CreateModel(
                name="Dashboard",
                fields=[],
                options={
                    "verbose_name": "operations dashboard",
                    "proxy": True,
                    "default_permissions": ("view",),
                    "indexes": [],
                    "constraints": [],
                },
                bases=("failures.heartbeat",),
            ),
            ],
        ),
    ]
