"""Artist names and album titles get stored folded keys, filled here for existing rows.

Uniqueness was Lower(name), which SQLite applies to ASCII letters only: there, "Ünïcode
Ärtist" and "ÜNÏCODE ÄRTIST" could be two artists (and on PostgreSQL "Straße" and
"STRASSE"). Rows whose keys now agree are merged into the oldest one (its tracks, albums
and play counts move over), so that 0004 can make the keys unique.
"""

from django.db import migrations, models


def fill_keys_and_merge(apps, schema_editor):
    from catalog.models import name_key, search_key

    Artist = apps.get_model("catalog", "Artist")
    Album = apps.get_model("catalog", "Album")
    Track = apps.get_model("catalog", "Track")

    artists: dict[str, object] = {}
    for artist in Artist.objects.order_by("pk"):
        key = name_key(artist.name)
        keeper = artists.setdefault(key, artist)
        if keeper is artist:
            artist.name_key, artist.search_key = key, search_key(artist.name)
            continue
        Track.objects.filter(artist_id=artist.pk).update(artist_id=keeper.pk)
        Album.objects.filter(artist_id=artist.pk).update(artist_id=keeper.pk)
        keeper.play_count += artist.play_count
        artist.delete()
    Artist.objects.bulk_update(artists.values(), ["name_key", "search_key", "play_count"], batch_size=500)

    albums: dict[tuple[int, str], object] = {}
    for album in Album.objects.order_by("pk"):
        key = name_key(album.title)
        keeper = albums.setdefault((album.artist_id, key), album)
        if keeper is album:
            album.title_key, album.search_key = key, search_key(album.title)
            continue
        Track.objects.filter(album_id=album.pk).update(album_id=keeper.pk)
        keeper.play_count += album.play_count
        keeper.year = keeper.year or album.year
        album.delete()
    Album.objects.bulk_update(albums.values(), ["title_key", "search_key", "play_count", "year"], batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0002_track_match_key"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="album", name="album_artist_title_ci_unique"),
        migrations.RemoveConstraint(model_name="artist", name="artist_name_ci_unique"),
        migrations.AddField(
            model_name="artist",
            name="name_key",
            field=models.CharField(default="", editable=False, help_text="The name case-folded (see name_key), set on save; unique.", max_length=400),
        ),
        migrations.AddField(
            model_name="artist",
            name="search_key",
            field=models.CharField(default="", editable=False, help_text="The name case- and accent-folded, what search matches; set on save.", max_length=400),
        ),
        migrations.AddField(
            model_name="album",
            name="title_key",
            field=models.CharField(default="", editable=False, help_text="The title case-folded (see name_key), set on save; unique per artist.", max_length=400),
        ),
        migrations.AddField(
            model_name="album",
            name="search_key",
            field=models.CharField(default="", editable=False, help_text="The title case- and accent-folded, what search matches; set on save.", max_length=400),
        ),
        migrations.RunPython(fill_keys_and_merge, migrations.RunPython.noop),
    ]
