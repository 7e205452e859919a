"""Fewer indexes for the sweep's writes: the foreign keys that lead a composite index lose their own, a
period's previous stage (never filtered on) loses its, and the profile's unique key becomes a constraint
(unique=True also made a LIKE-pattern index on PostgreSQL)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0007_profile_fillfactor"),
    ]

    operations = [
        migrations.AlterField(
            model_name="cohortmembership",
            name="cohort",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="usage.cohort",
            ),
        ),
        migrations.AlterField(
            model_name="profile",
            name="workspace_key",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="stageperiod",
            name="previous",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="usage.stage",
            ),
        ),
        migrations.AlterField(
            model_name="stageperiod",
            name="stage",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="periods", to="usage.stage"
            ),
        ),
        migrations.AddConstraint(
            model_name="profile",
            constraint=models.UniqueConstraint(fields=("workspace_key",), name="profile_unique_workspace"),
        ),
    ]
