import functools

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

DEFAULT_PASSWORD = "correct-horse-battery-staple"


@functools.cache
def hashed(password: str) -> str:
    """Hash each test password once: the real hasher is slow on purpose."""
    return make_password(password)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.password = hashed(extracted or DEFAULT_PASSWORD)
        if create:
            self.save(update_fields=["password"])


_track_numbers = iter(range(1, 10**9))


def make_track(title: str, artist: str, album: str | None, *, duration_s: float, mbid: str = ""):
    """A library track row without a file (for tests that never stream it)."""
    from catalog.models import Album, Artist, Track, name_key

    artist_row = Artist.objects.filter(name_key=name_key(artist)).first() or Artist.objects.create(name=artist)
    album_row = None
    if album:
        album_row = (Album.objects.filter(artist=artist_row, title_key=name_key(album)).first()
                     or Album.objects.create(title=album, artist=artist_row))
    n = next(_track_numbers)
    return Track.objects.create(
        title=title, artist=artist_row, album=album_row, duration_s=duration_s, file_path=f"/nowhere/{n}.mp3",
        format="mp3", mime_type="audio/mpeg", size_bytes=1000, checksum=f"{n:064d}", musicbrainz_id=mbid,
    )


def shown_room(room) -> dict:
    """A room as the now-playing listing shows it (what rooms/scrobbles.py passes to scrobbling)."""
    return {"id": room.pk, "name": room.name, "slug": room.slug, "private": room.visibility == "private"}


class TitleFactory(factory.django.DjangoModelFactory):
    """A catalog title (a film unless `kind="tv"`), as a sync would leave it."""

    class Meta:
        model = "catalog.Title"

    kind = "movie"
    title = factory.Sequence(lambda n: f"Film {n}")
    year = 2024
    rating = 7.5
    votes = 1000
    runtime_min = 100


class PersonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "catalog.Person"
        django_get_or_create = ("key",)

    name = factory.Sequence(lambda n: f"Person {n}")
    key = factory.LazyAttribute(lambda person: f"name:{person.name}")


def credit(title, name: str, role: str, order: int = 0, character: str = ""):
    """Credit `name` (a person made once per name) on `title`."""
    from catalog.models import Credit

    return Credit.objects.create(title=title, person=PersonFactory(name=name), role=role, order=order, character=character)


def episode(title, season: int, number: int, **fields):
    """Episode `number` of season `season` of a TV title (the season made when missing)."""
    from catalog.models import Episode, Season

    season_row, _ = Season.objects.get_or_create(title=title, number=season)
    return Episode.objects.create(season=season_row, number=number, **fields)
