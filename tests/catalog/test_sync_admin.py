"""The film catalog in the admin: every model's pages, the field locks (an edit locks the field,
the form shows the locks and releases them, a sync honours them), Sync now, and the read-only
run history."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from catalog import sync
from catalog.models import SyncRun, Title
from tests.catalog.sync_support import douban_fixture, full_subject, sync_settings_fixture  # noqa: F401 - fixtures
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

FILM_MODELS = ("title", "season", "episode", "person", "genre", "country", "language", "externalid", "release",
               "credit", "video", "danmaku", "favorite", "watchprogress", "syncrun")


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _synced(douban) -> Title:
    douban.add(full_subject(1, douban.url))
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)
    return Title.objects.get()


def _form_data(row: Title, **changes) -> dict:
    title = row
    data = {
        "kind": title.kind, "title": title.title, "original_title": title.original_title,
        "other_titles": json.dumps(title.other_titles, ensure_ascii=False), "year": title.year or "", "rating": title.rating or "", "votes": title.votes or "",
        "synopsis": title.synopsis, "cover": title.cover, "release_date": title.release_date or "",
        "runtime_min": title.runtime_min or "", "imdb_id": title.imdb_id, "episode_count": "",
        "episode_runtime_min": "", "season_number": "",
        "genres": [g.pk for g in title.genres.all()], "countries": [c.pk for c in title.countries.all()],
        "languages": [lang.pk for lang in title.languages.all()],
    }
    for prefix, rows in (("external_ids", title.external_ids.all()), ("releases", title.releases.all()),
                         ("credits", title.credits.all()), ("seasons", title.seasons.all())):
        rows = list(rows)
        data.update({f"{prefix}-TOTAL_FORMS": len(rows), f"{prefix}-INITIAL_FORMS": len(rows),
                     f"{prefix}-MIN_NUM_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 1000})
        for index, row in enumerate(rows):
            data[f"{prefix}-{index}-id"] = row.pk
            data[f"{prefix}-{index}-title"] = title.pk
            if prefix == "external_ids":
                data.update({f"{prefix}-{index}-source": row.source, f"{prefix}-{index}-kind": row.kind,
                             f"{prefix}-{index}-value": row.value})
            elif prefix == "releases":
                data.update({f"{prefix}-{index}-date": row.date.isoformat(), f"{prefix}-{index}-region": row.region,
                             f"{prefix}-{index}-precision": row.precision})
            elif prefix == "credits":
                data.update({f"{prefix}-{index}-person": row.person_id, f"{prefix}-{index}-role": row.role,
                             f"{prefix}-{index}-order": row.order, f"{prefix}-{index}-character": row.character})
            else:
                data.update({f"{prefix}-{index}-number": row.number, f"{prefix}-{index}-name": row.name})
    data.update(changes)
    return data


def test_every_film_model_has_admin_pages(admin_client, sync_settings, douban):
    _synced(douban)
    for model in FILM_MODELS:
        assert admin_client.get(reverse(f"admin:catalog_{model}_changelist")).status_code == 200, model
    title = Title.objects.get()
    page = admin_client.get(reverse("admin:catalog_title_change", args=[title.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Release locks" in html
    assert "Written by" in html
    found = admin_client.get(reverse("admin:catalog_title_changelist"), {"q": "影片1"}).content.decode()
    assert "影片1" in found


def test_a_field_edited_in_the_admin_is_locked_survives_a_sync_and_is_released_in_the_form(
        admin_client, sync_settings, douban):
    title = _synced(douban)
    url = reverse("admin:catalog_title_change", args=[title.pk])

    saved = admin_client.post(url, _form_data(title, title="我改的名字", synopsis="手写的简介。"))

    assert saved.status_code == 302, saved.content.decode()[:3000]
    title.refresh_from_db()
    assert title.locked_fields == ["title", "synopsis"]
    assert "title, synopsis" in admin_client.get(url).content.decode()  # the form shows the locks
    douban.subjects["1000001"].rating = "6.5"
    douban.subjects["1000001"].title = "新名字"
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)
    title.refresh_from_db()
    assert (title.title, title.synopsis, title.rating) == ("我改的名字", "手写的简介。", 6.5)

    released = admin_client.post(url, _form_data(title, release_locks=["title"]))
    assert released.status_code == 302
    title.refresh_from_db()
    assert title.locked_fields == ["synopsis"]
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    douban.subjects["1000001"].rating = "6.6"
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)
    title.refresh_from_db()
    assert (title.title, title.synopsis) == ("新名字", "手写的简介。")


def test_an_inline_edit_locks_its_field_and_the_action_releases_every_lock(admin_client, sync_settings, douban):
    title = _synced(douban)
    url = reverse("admin:catalog_title_change", args=[title.pk])
    data = _form_data(title)
    data["releases-0-region"] = "手填地区"

    assert admin_client.post(url, data).status_code == 302
    title.refresh_from_db()
    assert title.locked_fields == ["releases"]
    admin_client.post(reverse("admin:catalog_title_changelist"),
                      {"action": "release_all_locks", "_selected_action": [title.pk]})
    title.refresh_from_db()
    assert title.locked_fields == []


def test_sync_now_from_the_admin_and_the_read_only_history(admin_client, sync_settings, douban, monkeypatch):
    enqueued = []
    monkeypatch.setattr(sync, "_enqueue", enqueued.append)
    earlier = SyncRun.objects.create(source="douban", state="done", listed=3, new=2, errors=[
        {"item": "影片9", "reason": "Douban has no such subject (HTTP 404)"}])
    changelist = reverse("admin:catalog_syncrun_changelist")
    assert reverse("catalog:sync-runs") in admin_client.get(changelist).content.decode()  # Sync now with no row yet

    answer = admin_client.post(changelist, {"action": "sync_now_douban", "_selected_action": [earlier.pk]}, follow=True)

    run = SyncRun.objects.exclude(pk=earlier.pk).get()
    assert (run.source, run.trigger, run.state) == ("douban", "manual", "queued")
    assert f"Sync run {run.pk} of Douban started" in answer.content.decode()
    detail = admin_client.get(reverse("admin:catalog_syncrun_change", args=[earlier.pk])).content.decode()
    assert "Douban has no such subject (HTTP 404)" in detail
    assert 'name="_save"' not in detail  # read-only
    assert admin_client.get(reverse("admin:catalog_syncrun_add")).status_code == 403
