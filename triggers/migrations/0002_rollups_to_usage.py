"""The usage rollups move to usage with their tables."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("usage", "0004_rollups_from_triggers"),
        ('triggers', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.DeleteModel(
                name='UsageDaily',
            ),
            migrations.DeleteModel(
                name='UsageDailyUser',
            ),
            ],
        ),
    ]
