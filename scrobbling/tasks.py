from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def drain_link(user_id: int, service: str) -> None:
    """Send a user's buffered plays to one service. Idempotent: the buffer is the truth,
    and a second drain of the same link finds the first one's lease and leaves."""
    from scrobbling import delivery, kicks

    kicks.kicked(user_id=user_id, service=service)
    result = delivery.drain(user_id=user_id, service=service)
    if result.retry_in_s is not None:
        drain_link.apply_async((user_id, service), countdown=result.retry_in_s)
    elif result.more:
        drain_link.delay(user_id, service)


@shared_task(ignore_result=True)
def send_now_playing(user_id: int, track_id: int | None, listen: dict | None = None) -> None:
    """Best effort and never retried: a late "now playing" would be wrong. A library track
    by id, or `listen` (artist, title, album, duration_s, mbid) for one that is not."""
    from scrobbling import delivery

    delivery.send_now_playing(user_id=user_id, track_id=track_id, listen=listen)


@shared_task(ignore_result=True)
def sweep() -> None:
    """Every minute (beat): requeued dead letters back to the buffer, and a drain for every
    link with plays due (after a back-off, an expired lease of a killed worker, a reconnect);
    and now playing entries whose time ran out are dropped."""
    from scrobbling import delivery, nowplaying

    nowplaying.now_playing_expire()
    for user_id, service in delivery.sweep():
        drain_link.delay(user_id, service)
