"""Plays get a stored folded key of artist and title, filled here for existing rows.

An unmatched play (no library track) was unique by Lower(artist_name), Lower(track_title),
which SQLite applies to ASCII letters only, and which is not what Chorus itself calls the
same listen (case- and accent-insensitive, as catalog.models.match_key). Unmatched plays
that are one listen by the new key are merged into the oldest (the later copies, and their
pending deliveries, are deleted), so that 0003 can make the key unique.
"""

from django.db import migrations, models


def fill_keys_and_drop_duplicates(apps, schema_editor):
    from catalog.models import match_key

    Play = apps.get_model("scrobbling", "Play")
    plays = list(Play.objects.only("id", "user_id", "track_id", "artist_name", "track_title", "played_at").order_by("id"))
    seen: set[tuple] = set()
    duplicates = []
    for play in plays:
        play.match_key = match_key(play.artist_name, play.track_title)
        if play.track_id is None:
            key = (play.user_id, play.match_key, play.played_at)
            if key in seen:
                duplicates.append(play.pk)
            seen.add(key)
    Play.objects.bulk_update(plays, ["match_key"], batch_size=1000)
    for start in range(0, len(duplicates), 500):
        Play.objects.filter(pk__in=duplicates[start:start + 500]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("scrobbling", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="play",
            name="match_key",
            field=models.CharField(blank=True, default="", editable=False, help_text="Folded artist and title (catalog.models.match_key): an unmatched play is unique by it.", max_length=400),
        ),
        migrations.RunPython(fill_keys_and_drop_duplicates, migrations.RunPython.noop),
    ]
