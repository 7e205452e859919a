"""SourceDay and RollupCursor (events received per source and day) move here from ops and keep their tables; WorkspaceLock moves to workspaces."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("workspaces", "0006_reviewitem_from_linking"),
        ("ops", "0005_prune_task_results_schedule"),
        ('events', '0004_webhookbatch'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='RollupCursor',
                fields=[
                    ('name', models.CharField(max_length=32, primary_key=True, serialize=False)),
                    ('position', models.BigIntegerField(default=0)),
                ],
                options={
                    'db_table': 'ops_rollupcursor',
                },
            ),
            migrations.CreateModel(
                name='SourceDay',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('source', models.CharField(max_length=16)),
                    ('day', models.DateField()),
                    ('count', models.PositiveIntegerField(default=0)),
                    ('first_at', models.DateTimeField()),
                    ('last_at', models.DateTimeField()),
                ],
                options={
                    'db_table': 'ops_sourceday',
                },
            ),
            migrations.DeleteModel(
                name='WorkspaceLock',
            ),
            migrations.AddConstraint(
                model_name='sourceday',
                constraint=models.UniqueConstraint(fields=('source', 'day'), name='sourceday_unique'),
            ),
            ],
        ),
    ]
