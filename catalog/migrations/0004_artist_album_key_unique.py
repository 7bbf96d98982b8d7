"""The folded keys filled by 0003 become the unique ones (its own transaction: on
PostgreSQL a table cannot be altered while the merge's foreign-key checks are pending)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0003_artist_album_folded_keys"),
    ]

    operations = [
        migrations.AlterModelOptions(name="album", options={"ordering": ["title_key"]}),
        migrations.AlterModelOptions(name="artist", options={"ordering": ["name_key"]}),
        migrations.AddConstraint(
            model_name="artist",
            constraint=models.UniqueConstraint(fields=("name_key",), name="artist_name_key_unique"),
        ),
        migrations.AddConstraint(
            model_name="album",
            constraint=models.UniqueConstraint(fields=("artist", "title_key"), name="album_artist_title_key_unique"),
        ),
    ]
