"""Sessions and seats read a workspace's (day, user) pairs: an index that starts with (workspace, day).

The unique key starts with (workspace, feature, product), so the sessions statement read every row of a
workspace's history and sorted it; this index gives the window's rows in (workspace, day, user) order,
readable from the index alone. The table keeps its name (triggers_usagedailyuser).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0004_rollups_from_triggers"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="usagedailyuser",
            index=models.Index(fields=["workspace_key", "day", "user_email"], name="usagedailyuser_ws_day_user"),
        ),
    ]
