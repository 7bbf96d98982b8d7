"""Starting and following a film sync: the API (202 at once, the running run again, unknown
and disabled sources, staff only, in the OpenAPI docs), the run pages and "Sync now" (staff,
CSRF), the progress events the sync publishes and the websocket that relays them, the
management command, and the beat's schedules."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.test import Client as DjangoClient
from django.test import TestCase
from django.urls import reverse

from catalog import sync
from catalog.models import SyncRun, Title
from project.accounts.services import token_create
from tests.catalog.sync_support import douban_fixture, full_subject, sync_settings_fixture  # noqa: F401 - fixtures
from tests.rooms.conftest import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_token(staff):
    return token_create(user=staff, name="sync")[1]


def _api(client, method: str, path: str, token: str, **kwargs):
    return getattr(client, method)(f"/api/catalog/sync{path}", HTTP_AUTHORIZATION=f"Bearer {token}", **kwargs)


# --- the API ----------------------------------------------------------------------------------

def test_post_answers_202_at_once_with_the_queued_run_and_again_with_the_same_run(client, sync_settings,
                                                                                  staff_token, monkeypatch):
    enqueued = []
    monkeypatch.setattr(sync, "_enqueue", enqueued.append)

    with TestCase.captureOnCommitCallbacks(execute=True):
        first = _api(client, "post", "/douban?kind=newest", staff_token)

    assert first.status_code == 202
    body = first.json()
    assert (body["state"], body["source"], body["kind"], body["trigger"]) == ("queued", "douban", "newest", "api")
    assert body["already_running"] is False
    assert body["url"] == reverse("catalog:sync-run", args=[body["id"]])
    assert enqueued == [body["id"]]  # the worker gets it once the run is committed
    again = _api(client, "post", "/douban", staff_token)
    assert again.status_code == 202
    assert (again.json()["id"], again.json()["already_running"]) == (body["id"], True)
    assert SyncRun.objects.count() == 1


def test_the_runs_and_one_run_with_its_counts_and_errors(client, sync_settings, douban, staff_token):
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    douban.fail_next(3, status=503, after=2)  # the first page, all three tries
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)

    listed = _api(client, "get", "/runs", staff_token)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()] == [run.pk]
    one = _api(client, "get", f"/runs/{run.pk}", staff_token).json()
    assert {key: one[key] for key in ("state", "listed", "done", "new", "failed", "percent")} == {
        "state": "done", "listed": 2, "done": 2, "new": 1, "failed": 1, "percent": 100}
    assert one["errors"][0]["item"] == "影片1"
    assert "503" in one["errors"][0]["reason"]
    assert _api(client, "get", "/runs?state=failed", staff_token).json() == []
    missing = _api(client, "get", "/runs/999999", staff_token)
    assert missing.status_code == 404
    assert "999999" in missing.json()["message"]


def test_an_unknown_source_is_404_naming_it_and_the_known_ones(client, sync_settings, staff_token):
    answer = _api(client, "post", "/nosuch", staff_token)
    assert answer.status_code == 404
    assert answer.json()["field"] == "source"
    assert "'nosuch'" in answer.json()["message"]
    assert "douban, tmdb" in answer.json()["message"]


def test_a_source_without_its_key_is_409_saying_which_setting(client, sync_settings, staff_token):
    answer = _api(client, "post", "/tmdb", staff_token)
    assert answer.status_code == 409
    assert "CATALOG_TMDB_API_KEY" in answer.json()["message"]
    bad_kind = _api(client, "post", "/douban?kind=changes", staff_token)
    assert bad_kind.status_code == 400
    assert bad_kind.json()["field"] == "kind"
    assert SyncRun.objects.count() == 0


def test_only_staff_may_use_the_sync_api(client, sync_settings, alice):
    token = token_create(user=alice, name="x")[1]
    for method, path in (("post", "/douban"), ("get", "/runs"), ("get", "/runs/1")):
        assert _api(client, method, path, token).status_code == 403
    assert client.post("/api/catalog/sync/douban").status_code == 401
    assert SyncRun.objects.count() == 0


def test_the_sync_endpoints_are_in_the_openapi_docs(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "post" in paths["/api/catalog/sync/{source}"]
    assert "202" in paths["/api/catalog/sync/{source}"]["post"]["responses"]
    assert "get" in paths["/api/catalog/sync/runs"]
    assert "get" in paths["/api/catalog/sync/runs/{run_id}"]


# --- the pages ---------------------------------------------------------------------------------

def test_sync_now_starts_a_run_and_shows_its_page(sync_settings, staff):
    browser = DjangoClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    page = browser.get(reverse("catalog:sync-runs"))
    assert page.status_code == 200
    assert reverse("catalog:sync-start", args=["douban"]) in page.content.decode()
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else browser.cookies["csrftoken"].value

    refused = browser.post(reverse("catalog:sync-start", args=["douban"]))
    assert refused.status_code == 403  # no CSRF token
    answer = browser.post(reverse("catalog:sync-start", args=["douban"]), {"csrfmiddlewaretoken": token})
    run = SyncRun.objects.get()
    assert answer.status_code == 302
    assert answer.url == reverse("catalog:sync-run", args=[run.pk])
    assert (run.trigger, run.requested_by) == ("manual", staff)
    again = browser.post(reverse("catalog:sync-start", args=["douban"]), {"csrfmiddlewaretoken": token})
    assert again.url == answer.url
    assert browser.post(reverse("catalog:sync-start", args=["nosuch"]), {"csrfmiddlewaretoken": token}).status_code == 404


def test_the_run_page_shows_progress_counts_and_errors(staff_client, sync_settings, douban):
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    douban.fail_next(3, status=503, after=2)
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)

    page = staff_client.get(reverse("catalog:sync-run", args=[run.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-count="new">1<' in html
    assert 'data-count="failed">1<' in html
    assert 'aria-valuenow="100"' in html
    assert "HTTP 503" in html
    assert f"/ws/catalog/sync/{run.pk}/" in html
    assert "sync_run.js" in html
    history = staff_client.get(reverse("catalog:sync-runs")).content.decode()
    assert f'data-run="{run.pk}"' in history


def test_the_sync_pages_are_for_staff_only(alice_client, sync_settings):
    run = SyncRun.objects.create(source="douban")
    for url in (reverse("catalog:sync-runs"), reverse("catalog:sync-run", args=[run.pk])):
        assert alice_client.get(url).status_code == 302  # to the admin login
    assert alice_client.post(reverse("catalog:sync-start", args=["douban"])).status_code == 302
    assert SyncRun.objects.count() == 1


# --- live progress -----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_run_publishes_its_progress_after_each_commit_and_its_end(sync_settings, douban, published, monkeypatch):
    monkeypatch.setattr(sync, "PROGRESS_EVERY_S", 0)
    for number in range(1, 4):
        douban.add(full_subject(number, douban.url))
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)  # commits for real: each event is built when its commit is done

    events = [event for topic, event in published.of_type("catalog.sync_run") if topic == sync.sync_group(run.pk)]
    assert [event["state"] for event in events[:2]] == ["queued", "running"]
    done = [event["done"] for event in events if event["state"] == "running" and event["listed"]]
    assert done == sorted(done)
    assert {1, 2, 3} <= set(done)  # an event after each title's commit
    assert any(event["current_item"] == "影片2" for event in events)
    assert events[-1]["state"] == "done"
    assert events[-1]["new"] == 3
    assert events[-1]["percent"] == 100
    assert events[-1]["rate_per_min"] is None or events[-1]["rate_per_min"] > 0


@pytest.mark.django_db(transaction=True)
def test_progress_is_throttled_and_every_change_of_state_still_goes_out(sync_settings, douban, published,
                                                                          monkeypatch):
    monkeypatch.setattr(sync, "PROGRESS_EVERY_S", 60)  # nothing but the forced events within a minute
    for number in range(1, 9):
        douban.add(full_subject(number, douban.url))
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    sync.sync_execute(run_id=run.pk)
    events = [event for _, event in published.of_type("catalog.sync_run")]
    # queued, running, listing, listed, done: not one per title.
    assert [event["state"] for event in events] == ["queued", "running", "running", "running", "done"]
    assert [event["listed"] for event in events] == [0, 0, 0, 8, 8]
    assert events[-1]["done"] == 8


@pytest.mark.django_db(transaction=True)
async def test_the_run_socket_sends_the_run_then_its_progress_to_staff_only(sync_settings, douban, staff, alice,
                                                                             clean_redis):
    from project.asgi import application

    douban.add(full_subject(1, douban.url))
    run, _ = await sync_to_async(sync.sync_start)(source="douban", trigger="manual", enqueue=False)
    staff_token = await sync_to_async(lambda: token_create(user=staff, name="ws")[1])()
    alice_token = await sync_to_async(lambda: token_create(user=alice, name="ws")[1])()

    async def open_socket(run_id: int, token: str) -> Client:
        communicator = WebsocketCommunicator(application, f"/ws/catalog/sync/{run_id}/",
                                             headers=[(b"authorization", f"Bearer {token}".encode())])
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        return Client(communicator)

    watcher = await open_socket(run.pk, staff_token)
    first = await watcher.expect("catalog.sync_run")
    assert (first["id"], first["state"]) == (run.pk, "queued")
    await sync_to_async(sync.sync_execute)(run_id=run.pk)
    done = await watcher.expect("catalog.sync_run", state="done")
    assert (done["new"], done["done"], done["listed"]) == (1, 1, 1)
    await watcher.send({"type": "ping"})
    assert (await watcher.expect("pong"))["type"] == "pong"
    await watcher.send({"type": "start"})
    assert (await watcher.expect("error"))["field"] == "type"
    await watcher.ws.disconnect()

    outsider = await open_socket(run.pk, alice_token)
    assert await outsider.closed_with() == 4403
    unknown = await open_socket(999999, staff_token)
    assert await unknown.closed_with() == 4404


# --- the command and the beat ------------------------------------------------------------------

def test_the_command_runs_a_sync_and_names_the_known_sources_for_an_unknown_one(sync_settings, douban, capsys):
    douban.add(full_subject(1, douban.url))
    call_command("catalog_sync", "douban", "--wait")
    out = capsys.readouterr().out
    assert "done. listed 1, new 1" in out
    assert Title.objects.count() == 1
    with pytest.raises(CommandError, match="No catalog source called 'imdb'; the sources are douban, tmdb"):
        call_command("catalog_sync", "imdb")
    with pytest.raises(CommandError, match="CATALOG_TMDB_API_KEY"):
        call_command("catalog_sync", "tmdb", "--kind", "changes")


def test_the_command_without_wait_queues_the_run_for_a_worker(sync_settings, monkeypatch, capsys):
    enqueued = []
    monkeypatch.setattr(sync, "_enqueue", enqueued.append)
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("catalog_sync", "douban", "--kind", "refresh")
    run = SyncRun.objects.get()
    assert (run.kind, run.state, enqueued) == ("refresh", "queued", [run.pk])
    assert f"Sync run {run.pk} of douban (refresh) queued" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_the_beat_has_the_catalog_schedules_editable_in_the_admin(sync_settings, monkeypatch):
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from catalog import tasks
    from project.celery import app

    DatabaseScheduler(app=app).setup_schedule()  # what beat does when it starts

    newest = PeriodicTask.objects.get(name="catalog-douban-newest")
    assert (newest.task, newest.interval.every, newest.interval.period) == ("catalog.tasks.scheduled_sync", 28800,
                                                                            "seconds")
    assert newest.kwargs == '{"source": "douban", "kind": "newest"}'
    changes = PeriodicTask.objects.get(name="catalog-tmdb-changes")
    assert (changes.interval.every, changes.kwargs) == (86400, '{"source": "tmdb", "kind": "changes"}')
    refresh = PeriodicTask.objects.get(name="catalog-refresh")
    assert refresh.task == "catalog.tasks.scheduled_refresh"
    assert {newest.task, refresh.task, "catalog.tasks.sync_run"} <= set(app.tasks)

    enqueued = []
    monkeypatch.setattr(sync, "_enqueue", enqueued.append)
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks.scheduled_sync(source="douban", kind="newest")
        tasks.scheduled_sync(source="tmdb", kind="changes")  # no key: nothing, no error
        tasks.scheduled_refresh()  # douban is in flight already: the same run
    run = SyncRun.objects.get()
    assert (run.source, run.kind, run.trigger) == ("douban", "newest", "schedule")
    assert enqueued == [run.pk]


def test_a_trigger_sends_the_task_again_for_a_run_nobody_holds(sync_settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    enqueued = []
    monkeypatch.setattr(sync, "_enqueue", enqueued.append)
    held = SyncRun.objects.create(source="douban", state="running", lease_owner="x",
                                  lease_until=timezone.now() + timedelta(seconds=60))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert sync.sync_start(source="douban", trigger="schedule") == (held, False)
    assert enqueued == []  # its worker is on it
    SyncRun.objects.filter(pk=held.pk).update(lease_until=timezone.now() - timedelta(seconds=1))  # the worker died
    with TestCase.captureOnCommitCallbacks(execute=True):
        run, started = sync.sync_start(source="douban", trigger="schedule")
    assert (run.pk, started, enqueued) == (held.pk, False, [held.pk])


def test_a_source_that_blocked_us_is_409_until_its_retry_time(client, sync_settings, staff_token):
    from datetime import timedelta

    from django.utils import timezone

    blocked = SyncRun.objects.create(source="douban", state="blocked", error="Douban answered with its anti-bot page",
                                     retry_at=timezone.now() + timedelta(minutes=30))
    answer = _api(client, "post", "/douban", staff_token)
    assert answer.status_code == 409
    assert f"run {blocked.pk} continues after" in answer.json()["message"]
    SyncRun.objects.filter(pk=blocked.pk).update(retry_at=timezone.now() - timedelta(seconds=1))
    answer = _api(client, "post", "/douban", staff_token)
    assert answer.status_code == 202
    assert (answer.json()["id"], answer.json()["state"], answer.json()["already_running"]) == (blocked.pk, "queued",
                                                                                              False)
