"""The model moved here from events and keeps its table (Meta.db_table): the state moves, the database does not."""

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("events", "0004_webhookbatch"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='WorkspaceLock',
                fields=[
                    ('workspace_key', models.CharField(max_length=64, primary_key=True, serialize=False)),
                    ('processed_at', models.DateTimeField(blank=True, null=True)),
                ],
                options={
                    'db_table': 'events_workspacelock',
                },
            ),
            ],
        ),
    ]
