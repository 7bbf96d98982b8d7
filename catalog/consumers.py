"""Websockets of the film catalog. Thin: the same auth as rooms (session or bearer token,
origin checked by project/asgi.py); frames come from the realtime hub.

- TitleConsumer, /ws/catalog/titles/<title_id>/: the title's watchers. Anyone logged in may
  watch; every danmaku posted on the title (catalog.film_services.danmaku_post) arrives as
  a `catalog.danmaku` event. A watcher may post one too (`danmaku.post`), or `ping`.
- SyncRunConsumer, /ws/catalog/sync/<run_id>/: one sync run's progress, for staff."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from catalog import film_services, sync
from catalog.film_services import FilmError
from catalog.models import SyncRun, Title
from project import inputs
from project.realtime import encode
from project.topic_socket import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, TopicSocket

logger = logging.getLogger(__name__)

class TitleConsumer(TopicSocket):
    async def connect(self):
        if not await self.accept_authenticated():
            return
        self.title_id = self.scope["url_route"]["kwargs"]["title_id"]
        exists = self.title_id <= inputs.MAX_SAFE_INTEGER and await Title.objects.filter(pk=self.title_id).aexists()
        if not exists:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.watch(film_services.title_group(self.title_id))
        await self.send(text_data=encode({"type": "catalog.hello", "title_id": self.title_id}))

    async def receive(self, text_data=None, bytes_data=None):
        """`ping` is answered with `pong`; `danmaku.post` posts one (answered with
        `danmaku.posted`, and everyone gets the `catalog.danmaku`); anything else is an
        `error` naming what was wrong, and the socket stays open."""
        message = await self.frame(text_data, bytes_data)
        if message is None:
            return
        kind = message.get("type")
        if kind == "ping":
            await self.send(text_data=encode({"type": "pong"}))
        elif kind == "danmaku.post":
            try:
                posted = await database_sync_to_async(self._post)(message)
            except FilmError as exc:
                await self.error(exc.code, exc.message, field=exc.field)
                return
            await self.send(text_data=encode({"type": "danmaku.posted", "danmaku": posted}))
        else:
            await self.error("invalid", "type must be ping or danmaku.post.", field="type")

    def _post(self, message: dict) -> dict:
        title = film_services.title_get(title_id=self.title_id)
        row = film_services.danmaku_post(
            user=self.scope["user"], title=title, text=message.get("text"), offset_ms=message.get("offset_ms"),
            episode_id=message.get("episode_id"), color=message.get("color", "#ffffff"),
            mode=message.get("mode", "scroll"))
        return film_services.danmaku_json(row)



class SyncRunConsumer(TopicSocket):
    """/ws/catalog/sync/<run_id>/: one sync run's progress, for staff. On connect the run as
    it is (`catalog.sync_run`), then every progress event the sync publishes (catalog.sync,
    at most a few a second). Watchers only listen: `ping` is answered with `pong`, anything
    else is an `error` naming what was wrong."""

    async def connect(self):
        if not await self.accept_authenticated():
            return
        if not self.scope["user"].is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        if run_id > inputs.MAX_SAFE_INTEGER or not await SyncRun.objects.filter(pk=run_id).aexists():
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # Subscribed before the run is read: no event published in between is missed.
        await self.watch(sync.sync_group(run_id))
        run = await SyncRun.objects.aget(pk=run_id)
        await self.send(text_data=encode(sync.run_event(run)))

    async def receive(self, text_data=None, bytes_data=None):
        await self.listen_only(text_data, bytes_data)
