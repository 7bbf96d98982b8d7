"""The application's own Prometheus metrics (django-prometheus adds HTTP and database ones).

With several processes (web, worker), set PROMETHEUS_MULTIPROC_DIR to a shared empty
folder so that /metrics adds up every process's counters; `make run` does.
"""

from prometheus_client import Counter, Gauge, Histogram

import_files = Counter(
    "chorus_import_files",
    "Files looked at by library imports, by outcome.",
    ["outcome"],  # imported | present | skipped
)
stream_requests = Counter(
    "chorus_stream_requests",
    "Audio stream requests, by kind of answer.",
    ["mode"],  # file | range | transcode | not_modified | error
)

realtime_frames = Counter(
    "chorus_realtime_frames",
    "Frames fanned out to websockets by the realtime hub and the room clocks, by how they were written.",
    ["path"],  # prepared: one frame built for every socket (project/wsframes.py) | own: through the socket's consumer
)

scrobbles_buffered = Counter(
    "chorus_scrobbles_buffered", "Plays put in the delivery buffer, by service.", ["service"]
)
scrobbles_sent = Counter("chorus_scrobbles_sent", "Plays a service accepted, by service.", ["service"])
scrobbles_retried = Counter(
    "chorus_scrobbles_retried", "Plays whose delivery was put off after a try-later answer, by service.", ["service"]
)
scrobbles_dead_lettered = Counter(
    "chorus_scrobbles_dead_lettered", "Plays a service refused for good (see the admin), by service.", ["service"]
)
scrobble_requests = Counter(
    "chorus_scrobble_requests", "Requests sent to scrobbling services, by service and kind.", ["service", "kind"]
)

live_messages = Counter(
    "chorus_live_messages", "Live-feed messages, by platform and outcome.", ["platform", "outcome"]
)  # received | stored | duplicate | malformed
live_reconnects = Counter("chorus_live_reconnects", "Live-feed socket reconnects, by platform.", ["platform"])
live_paused = Counter(
    "chorus_live_paused",
    "Times a followed room was not read because its messages waited to be stored (LIVEFEED_BUFFER_MAX), by platform.",
    ["platform"],
)
live_fetchers = Gauge("chorus_live_fetchers", "Live channels this process follows now.", multiprocess_mode="livesum")
live_recorders = Gauge("chorus_live_recorders", "Live channels this process records now.", multiprocess_mode="livesum")
live_record_bytes = Counter("chorus_live_record_bytes", "Bytes of live video recorded, by platform.", ["platform"])
live_record_segments = Counter("chorus_live_record_segments", "Recorded segments closed, by platform.", ["platform"])
live_lag_seconds = Histogram(
    "chorus_live_lag_seconds", "From the platform's time of a message to Chorus receiving it.", ["platform"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

catalog_requests = Counter(
    "chorus_catalog_requests", "Requests the film sync made to catalog sources, by source, call and outcome.",
    ["source", "call", "outcome"],  # call: list | details | find | cover; outcome: ok | retry_later | give_up | blocked
)
catalog_titles = Counter(
    "chorus_catalog_titles", "Listed titles the film sync settled, by source and outcome.",
    ["source", "outcome"],  # created | updated | unchanged | skipped | failed
)
catalog_sync_duration_seconds = Histogram(
    "chorus_catalog_sync_duration_seconds", "Wall time of a film sync run (or of one worker's part of it), by how it ended.",
    ["source", "kind", "state"], buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600),
)

# Headers a reverse proxy adds: a request carrying one came through a proxy, whatever its
# REMOTE_ADDR says (a proxy on this machine connects from 127.0.0.1).
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_direct_local_request(request) -> bool:
    """A request made on this machine straight to this process: from a loopback address that
    is not one of TRUSTED_PROXIES, and with none of the headers proxies add."""
    import ipaddress

    from django.conf import settings

    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    if any(address in network for network in settings.TRUSTED_PROXIES):
        return False
    return not any(name in request.headers for name in PROXY_HEADERS)


def metrics_view(request):
    """/metrics for Prometheus: with METRICS_TOKEN set, only `Authorization: Bearer <it>`;
    otherwise only direct requests from this machine (not through a proxy)."""
    import hmac

    from django.conf import settings
    from django.http import JsonResponse
    from django_prometheus.exports import ExportToDjangoView

    from project.accounts.services import bearer_from_header

    if settings.METRICS_TOKEN:
        given = bearer_from_header(request.headers.get("Authorization")) or ""
        allowed = hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode())
    else:
        allowed = is_direct_local_request(request)
    if not allowed:
        return JsonResponse(
            {"error": "forbidden", "message": "Metrics need Authorization: Bearer <METRICS_TOKEN> (or a request from localhost)."},
            status=403,
        )
    return ExportToDjangoView(request)
