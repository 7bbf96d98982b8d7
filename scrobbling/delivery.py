"""Delivering buffered plays to the scrobbling services (Last.fm, Libre.fm, ListenBrainz...).

Each service is a client class in the registry (scrobbling/clients); nothing here names one.
One drain per (service, user) at a time, in played_at order, in batches (the client's
batch_size: Last.fm 50, ListenBrainz 1000 per request):

1. claim: under a lock on the user's link row, take the oldest entries, provided no other
   worker holds a lease on entries of that link, and lease them (lease_until, lease_token);
2. send them in one request;
3. on acceptance delete exactly the leased rows (matched by token); what the service ignored
   goes to DeadLetter with its answer. A "try later" answer releases the lease and backs the
   link off (5 s doubling to 4 min, with jitter, or what Retry-After says); an expired
   session, or a server address the outbound guard refuses, pauses the link and keeps the
   plays; any other refusal dead-letters the batch. Items refused for now (Last.fm's daily
   limit) wait as long as the client says. A ListenBrainz-compatible server that
   refuses a whole batch (4xx, or a 5xx other than 503) gets its listens again one per
   request, so only the listens it refuses are dead-lettered (409 to one listen: it has it
   already, so it counts as sent; a 5xx to one listen while it takes others: refused).

A worker killed at any instant leaves either rows that were never sent, or leased rows whose
lease expires, after which the next drain sends them again (at most one repeated batch).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from catalog import selectors as catalog
from project import metrics, outside
from scrobbling.clients import (
    ACCEPTED,
    AuthExpired,
    ClientError,
    GiveUp,
    ItemResult,
    Listen,
    NotAllowed,
    RetryLater,
    ScrobblingClient,
    registry,
)
from scrobbling.inputs import PlayInput
from scrobbling.links import link_pause
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink

logger = logging.getLogger(__name__)

# One task run sends for at most this long, then hands over to a new task (fairness).
DRAIN_BUDGET_S = 60.0
RETRY_AFTER_MAX_S = 6 * 3600


@dataclass
class DrainResult:
    sent: int = 0
    dead: int = 0
    requests: int = 0
    retry_in_s: float | None = None
    paused: bool = False
    more: bool = False  # stopped on the time budget with plays left


def batch_size(service: str) -> int:
    return registry.get(service).batch_size()


def backoff_s(failures: int) -> float:
    """5 s doubling to 4 min (settings), with jitter: between half and all of the step."""
    return outside.backoff_s(max(failures - 1, 0), first_s=settings.SCROBBLING_RETRY_MIN_S,
                             max_s=settings.SCROBBLING_RETRY_MAX_S)


def claim(*, user_id: int, service: str, size: int | None = None) -> tuple[str, list[BufferEntry]] | None:
    """Lease the oldest entries of an active link that nobody is sending; None if there is
    nothing to do (no entries, paused, backing off, or another worker's lease is live)."""
    now = timezone.now()
    with transaction.atomic():
        link = ScrobblerLink.objects.select_for_update().filter(user_id=user_id, service=service).first()
        if link is None or link.is_paused or (link.retry_at and link.retry_at > now):
            return None
        pending = BufferEntry.objects.filter(user_id=user_id, service=service)
        if pending.filter(lease_until__gt=now).exists():
            return None
        ids = list(pending.order_by("played_at", "id").values_list("id", flat=True)[: size or batch_size(service)])
        if not ids:
            return None
        token = secrets.token_hex(16)
        BufferEntry.objects.filter(id__in=ids).update(
            lease_until=now + timedelta(seconds=settings.SCROBBLING_LEASE_S), lease_token=token,
            attempts=F("attempts") + 1,
        )
    entries = list(
        BufferEntry.objects.filter(lease_token=token).select_related("play__track").order_by("played_at", "id")
    )
    return token, entries


def listen_of(play: Play | PlayInput) -> Listen:
    """What a service is sent for a recorded play, or for one just starting (now playing)."""
    return Listen(artist=play.artist_name, title=play.track_title, played_at=play.played_at, album=play.album_title,
                  duration_s=play.duration_s, mbid=play.recording_mbid,
                  track_number=play.track.track_number if play.track else None)


def drain(*, user_id: int, service: str, budget_s: float = DRAIN_BUDGET_S) -> DrainResult:
    """Send this link's buffered plays until none are left, the service says to wait, or
    the time budget is spent."""
    result = DrainResult()
    deadline = time.monotonic() + budget_s
    client = None
    try:
        while True:
            if time.monotonic() > deadline:
                result.more = BufferEntry.objects.filter(user_id=user_id, service=service).exists()
                return result
            claimed = claim(user_id=user_id, service=service)
            if claimed is None:
                return result
            token, entries = claimed
            link = ScrobblerLink.objects.filter(user_id=user_id, service=service).first()
            if link is None:  # unlinked this very moment: the plays wait for a new link
                _release(token)
                return result
            if client is None:
                kind = registry.get(service)
                if not kind.configured():  # the server's keys for it were removed
                    _release(token)
                    link_pause(link=link, reason=kind.not_configured_message())
                    result.paused = True
                    return result
                client = kind.from_link(link)
            if not _send(link, client, token, entries, result):
                return result
    finally:
        if client is not None:
            client.close()


def _send(link: ScrobblerLink, client: ScrobblingClient, token: str, entries: list[BufferEntry], result: DrainResult) -> bool:
    """Send one leased batch; True to go on with the next one."""
    service = link.service
    listens = [listen_of(e.play) for e in entries]
    outcomes, stop = _deliver(link, client, listens, result)
    # Settle what the service answered for (the whole batch, unless it said to stop part way
    # through a batch sent one listen at a time); the rest wait for a later drain.
    done = len(outcomes)
    waits = {e.pk: o for e, o in zip(entries, outcomes, strict=False) if o.retry_after_s is not None}
    limited = set(waits)
    if limited:
        # Refused for now (over Last.fm's daily limit): these plays wait as long as the
        # client says; the rest of the batch is settled.
        BufferEntry.objects.filter(lease_token=token, id__in=limited).update(lease_until=None, lease_token="")
    keep = [i for i in range(done) if entries[i].pk not in limited]
    if keep:
        _settle(link, token, [entries[i] for i in keep], [listens[i] for i in keep], [outcomes[i] for i in keep],
                result)
    if stop is not None:
        _release(token)
        _put_off(link, stop, waiting=len(entries) - done, result=result)
        return False
    if limited:
        wait_s = max(o.retry_after_s for o in waits.values())
        reason = next(iter(waits.values())).message or "refused for now"
        ScrobblerLink.objects.filter(pk=link.pk).update(
            retry_at=timezone.now() + timedelta(seconds=wait_s), last_error=f"{client.label}: {reason}"[:500]
        )
        metrics.scrobbles_retried.labels(service=service).inc(len(limited))
        result.retry_in_s = wait_s
        return False
    return True


def _deliver(link: ScrobblerLink, client: ScrobblingClient, listens: list[Listen],
             result: DrainResult) -> tuple[list[ItemResult], ClientError | None]:
    """Send a batch: the outcome of each listen settled, in order, and the error that
    stopped the sending (then the listens after the outcomes wait for a later drain)."""
    try:
        return _request(link, client, listens, result), None
    except (AuthExpired, NotAllowed) as exc:  # before GiveUp, which AuthExpired is a kind of
        return [], exc
    except RetryLater as exc:
        if not client.resend_one_by_one or len(listens) == 1 or not _server_error(exc):
            return [], exc
    except GiveUp as exc:
        if not client.resend_one_by_one or not _refused_as_a_whole(exc):
            return [ItemResult.refused(exc)] * len(listens), None
        if len(listens) == 1:
            return [ACCEPTED if exc.status == 409 else ItemResult.refused(exc)], None
    # A ListenBrainz-compatible server refused the whole batch for some of its listens
    # (Maloja 3.2.4+ answers 409 to an import with two listens in the same second, 3.2.3
    # answers 500, both after keeping the listens before): send them again one per
    # request, so that only the listens it really refuses are dead-lettered. Not by halves:
    # Maloja answers 200 to a request whose first listen it already has and ignores the
    # rest of it, so a half could be lost silently.
    return _one_by_one(link, client, listens, result)


MAX_DOUBTFUL = 3  # listens answered 5xx in a row, with none taken, before the server counts as down


def _one_by_one(link: ScrobblerLink, client: ScrobblingClient, listens: list[Listen],
                result: DrainResult) -> tuple[list[ItemResult], ClientError | None]:
    outcomes: list[ItemResult] = []
    answered = False  # the server took or refused some listen: it is up
    doubtful = 0  # 5xx answers in a row
    for listen in listens:
        try:
            _request(link, client, [listen], result)
            outcomes.append(ACCEPTED)
        except (AuthExpired, NotAllowed) as exc:  # before GiveUp, which AuthExpired is a kind of
            return (outcomes if answered else []), exc
        except GiveUp as exc:
            # 409 to a single listen: the service has a listen at that time already.
            outcomes.append(ACCEPTED if exc.status == 409 else ItemResult.refused(exc))
        except RetryLater as exc:
            if not _server_error(exc):
                return (outcomes if answered else []), exc
            # A 5xx for one listen: its fault if the server takes others; if it takes
            # none, the server is in trouble and every listen waits.
            doubtful += 1
            if not answered and doubtful >= MAX_DOUBTFUL:
                return [], exc
            outcomes.append(ItemResult(accepted=False, message=f"{exc} (for this listen alone, while the server "
                                                               "took others)", status=exc.status, answer=exc.answer))
            continue
        answered, doubtful = True, 0
    if not answered:
        return [], RetryLater(f"{client.label}: server errors for every listen",
                              status=outcomes[-1].status, answer=outcomes[-1].answer)
    return outcomes, None


def _server_error(exc: RetryLater) -> bool:
    """A 5xx that may be about the request rather than the server (not 503 Unavailable)."""
    return exc.status is not None and exc.status >= 500 and exc.status != 503


def _refused_as_a_whole(exc: GiveUp) -> bool:
    """A ListenBrainz answer that refuses a request for what is in it (400, 409, 413, ...)."""
    return exc.status is not None and 400 <= exc.status < 500


def _request(link: ScrobblerLink, client: ScrobblingClient, listens: list[Listen],
             result: DrainResult) -> list[ItemResult]:
    """One request to the service: what became of each listen."""
    result.requests += 1
    metrics.scrobble_requests.labels(service=link.service, kind="scrobble").inc()
    if not link.secret:
        raise AuthExpired("The stored credentials cannot be read (the encryption key changed).")
    return client.scrobble_batch(link.secret, listens)


def _put_off(link: ScrobblerLink, exc: ClientError, *, waiting: int, result: DrainResult) -> None:
    """The service said to wait (back off), or that the user must act (pause the link)."""
    service = link.service
    if isinstance(exc, RetryLater):
        link.failures += 1
        delay = min(exc.retry_after_s, RETRY_AFTER_MAX_S) if exc.retry_after_s else backoff_s(link.failures)
        ScrobblerLink.objects.filter(pk=link.pk).update(
            failures=link.failures, retry_at=timezone.now() + timedelta(seconds=delay), last_error=str(exc)[:500]
        )
        metrics.scrobbles_retried.labels(service=service).inc(waiting)
        logger.info("scrobbles put off", extra={"service": service, "user_id": link.user_id, "retry_in_s": delay})
        result.retry_in_s = delay
        return
    # An expired login, or a server address this server no longer calls: the plays are
    # kept until the user links again (a banner says why).
    link_pause(link=link, reason=str(exc) or "The service no longer accepts the saved login.")
    logger.warning("scrobbler link paused", extra={"service": service, "user_id": link.user_id})
    result.paused = True


def _release(token: str) -> None:
    BufferEntry.objects.filter(lease_token=token).update(lease_until=None, lease_token="")


def _settle(link, token, entries, listens, outcomes, result) -> None:
    """Delete the batch's rows (still ours by token); refused ones become dead letters."""
    refused = [(e, listen, o) for e, listen, o in zip(entries, listens, outcomes, strict=True) if not o.accepted]
    with transaction.atomic():
        DeadLetter.objects.bulk_create(
            [DeadLetter(user_id=link.user_id, service=link.service, play_id=e.play_id, payload=_payload(listen),
                        http_status=o.status, error_code=o.code, reason=(o.message or "Refused by the service")[:500],
                        answer=o.answer or o.message)
             for e, listen, o in refused],
            ignore_conflicts=True,
        )
        BufferEntry.objects.filter(lease_token=token, id__in=[e.pk for e in entries]).delete()
        fields = {"last_sent_at": timezone.now()} if len(refused) < len(entries) else {}
        ScrobblerLink.objects.filter(pk=link.pk).update(failures=0, retry_at=None, last_error="", **fields)
    sent = len(entries) - len(refused)
    result.sent += sent
    result.dead += len(refused)
    metrics.scrobbles_sent.labels(service=link.service).inc(sent)
    if refused:
        metrics.scrobbles_dead_lettered.labels(service=link.service).inc(len(refused))
        logger.warning("scrobbles refused", extra={"service": link.service, "user_id": link.user_id,
                                                   "count": len(refused)})


def _payload(listen: Listen) -> dict:
    return {"artist": listen.artist, "title": listen.title, "album": listen.album,
            "played_at": listen.played_at.isoformat(), "duration_s": listen.duration_s, "mbid": listen.mbid,
            "track_number": listen.track_number}


# --- dead letters and the periodic sweep --------------------------------------------


def dead_letters_requeue(*, ids: list[int]) -> int:
    """Staff: send these refused plays again (once their link is active)."""
    return DeadLetter.objects.filter(id__in=ids, requeue_requested_at__isnull=True).update(
        requeue_requested_at=timezone.now()
    )


def sweep() -> list[tuple[int, str]]:
    """Beat job: move requeued dead letters back to the buffer where their link is active,
    and list the links that have plays due (no live lease, not backing off, not paused)."""
    now = timezone.now()
    active = ScrobblerLink.objects.filter(status=ScrobblerLink.Status.ACTIVE)
    with transaction.atomic():
        for letter in DeadLetter.objects.select_for_update(skip_locked=True).filter(
            requeue_requested_at__isnull=False
        ).select_related("play"):
            if not active.filter(user_id=letter.user_id, service=letter.service).exists():
                continue
            BufferEntry.objects.get_or_create(
                service=letter.service, play=letter.play,
                defaults={"user_id": letter.user_id, "played_at": letter.play.played_at},
            )
            letter.delete()
    due = active.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
    pending = BufferEntry.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
    wanted = set(pending.values_list("user_id", "service").distinct())
    return sorted(wanted & set(due.values_list("user_id", "service")))


def send_now_playing(*, user_id: int, track_id: int | None, listen: dict | None = None) -> int:
    """Tell each active linked service what the user just started (a library track, or the
    `listen` an outside player described); best effort, never retried (a late "now
    playing" is wrong). Returns how many services took it."""
    if track_id is not None:
        track = catalog.track_get(track_id=track_id)
        if track is None:
            return 0
        listen = listen_of(PlayInput.of_track(track, played_at=timezone.now(), source="api"))
    elif listen is not None:
        listen = Listen(artist=listen["artist"], title=listen["title"], played_at=timezone.now(),
                        album=listen.get("album") or "", duration_s=listen.get("duration_s"),
                        mbid=listen.get("mbid") or "")
    else:
        return 0
    sent = 0
    for link in ScrobblerLink.objects.filter(user_id=user_id, status=ScrobblerLink.Status.ACTIVE):
        client = None
        try:
            if not link.secret:
                raise AuthExpired("The stored credentials cannot be read (the encryption key changed).")
            kind = registry.get(link.service)
            if not kind.configured():
                continue
            client = kind.from_link(link)
            metrics.scrobble_requests.labels(service=link.service, kind="now_playing").inc()
            client.now_playing(link.secret, listen)
            sent += 1
        except (AuthExpired, NotAllowed) as exc:
            link_pause(link=link, reason=str(exc) or "The service no longer accepts the saved login.")
        except Exception as exc:  # best effort by design: logged, never retried
            logger.info("now playing not sent", extra={"service": link.service, "error": str(exc)[:200]})
        finally:
            if client is not None:
                client.close()
    return sent
