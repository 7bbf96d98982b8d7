"""The rooms' clock when nobody is connected (beat, every few seconds). Thin: the services
do the work, each change a compare-and-set on the state version, so a sweep that runs twice
or at the same time as a server process's own clock changes a room once."""

from celery import shared_task


@shared_task(ignore_result=True)
def clock_sweep() -> None:
    """Rooms whose track ended move on, waits that timed out start, and members who left
    stop showing the room as their now playing."""
    from rooms import services

    services.rooms_catch_up()
    services.listeners_sweep()
