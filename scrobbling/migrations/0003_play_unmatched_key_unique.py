"""Unmatched plays become unique by the folded key 0002 filled (its own transaction: on
PostgreSQL a table cannot be altered while the deletions' foreign-key checks are pending)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("scrobbling", "0002_play_match_key"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="play", name="play_user_unmatched_time_unique"),
        migrations.AddConstraint(
            model_name="play",
            constraint=models.UniqueConstraint(
                condition=models.Q(("track__isnull", True)), fields=("user", "match_key", "played_at"),
                name="play_user_unmatched_key_time_unique",
            ),
        ),
    ]
