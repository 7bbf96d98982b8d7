from __future__ import annotations

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.pagination import paginate

from catalog import selectors, services
from catalog.models import ImportJob, Track
from project.schemas import ErrorOut

router = Router(tags=["library"])


class ArtistOut(Schema):
    id: int
    name: str
    play_count: int


class AlbumRef(Schema):
    id: int
    title: str


class TrackOut(Schema):
    id: int
    title: str
    artist: ArtistOut
    album: AlbumRef | None
    track_number: int | None
    disc_number: int | None
    duration_s: float
    format: str
    bitrate_bps: int | None
    sample_rate_hz: int | None
    size_bytes: int
    play_count: int
    added_at: datetime
    stream_url: str

    @staticmethod
    def resolve_stream_url(obj: Track) -> str:
        return obj.get_stream_url()


class AlbumOut(Schema):
    id: int
    title: str
    year: int | None
    artist: ArtistOut
    play_count: int
    track_total: int


class ImportIn(Schema):
    path: str


class ImportOut(Schema):
    id: int
    path: str
    status: str
    files_total: int | None
    files_seen: int
    imported: int
    already_present: int
    skipped: int
    error: str
    created_at: datetime
    finished_at: datetime | None


@router.get("/tracks", response=list[TrackOut], summary="Tracks, searched by title, artist or album")
@paginate
def list_tracks(request, q: str = ""):
    return selectors.track_search(query=q[:200])


@router.get("/tracks/{track_id}", response={200: TrackOut, 404: ErrorOut})
def get_track(request, track_id: int):
    return get_object_or_404(Track.objects.select_related("artist", "album"), pk=track_id)


@router.get("/artists", response=list[ArtistOut])
@paginate
def list_artists(request, q: str = ""):
    return selectors.artist_search(query=q[:200])


@router.get("/albums", response=list[AlbumOut])
@paginate
def list_albums(request, q: str = ""):
    return selectors.album_search(query=q[:200])


@router.post("/imports", response={202: ImportOut, 400: ErrorOut, 403: ErrorOut}, summary="Start importing a folder (staff)")
def create_import(request, payload: ImportIn):
    try:
        job = services.import_job_create(path=payload.path, user=request.user)
    except PermissionDenied as exc:
        return Status(403, {"error": "forbidden", "message": str(exc)})
    except ValidationError as exc:
        return Status(400, {"error": "invalid", "message": " ".join(exc.messages), "field": "path"})
    return Status(202, job)


@router.get("/imports/{job_id}", response={200: ImportOut, 403: ErrorOut, 404: ErrorOut})
def get_import(request, job_id: int):
    if not request.user.is_staff:
        return Status(403, {"error": "forbidden", "message": "Only staff can see imports."})
    return get_object_or_404(ImportJob, pk=job_id)
