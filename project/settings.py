"""Chorus settings: every value comes from the environment (see .env.example)."""

from __future__ import annotations

import os
import sys

from project import config
from project.config import BASE_DIR, ConfigError
from project.processes import celery_process, worker_entry

config.read_env_file()

DEBUG = config.get_bool("DEBUG", False)
SECRET_KEY = config.get_str("SECRET_KEY")
if not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ConfigError("SECRET_KEY must be at least 50 random characters when DEBUG=0")

ALLOWED_HOSTS = config.get_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS is required when DEBUG=0 (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = config.get_list("CSRF_TRUSTED_ORIGINS", [])

DATABASES = {"default": config.get_database("DATABASE_URL", "sqlite:///var/chorus.sqlite3")}
_db = DATABASES["default"]
# Without the pool (DATABASE_POOL=0): 0, as Django advises under ASGI, or seconds to keep one.
_conn_max_age_s = config.get_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] != ":memory:" and not _db["NAME"].startswith("/"):
        _db["NAME"] = str(BASE_DIR / _db["NAME"])
    # WAL and immediate transactions let web, worker and beat share one file.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # A connection pool per process (psycopg_pool, Django's own support): opening a
    # PostgreSQL connection per request cost ~2 ms of every request (docs/benchmarks.md).
    # With the pool on, connections are borrowed per request and CONN_MAX_AGE must be 0.
    if config.get_bool("DATABASE_POOL", True):
        if _conn_max_age_s:
            raise ConfigError("DATABASE_CONN_MAX_AGE must be 0 while DATABASE_POOL=1 (the pool keeps connections)")
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": config.get_int("DATABASE_POOL_MIN", 1, minimum=0),
            "max_size": config.get_int("DATABASE_POOL_MAX", 10, minimum=1),
            "timeout": config.get_float("DATABASE_POOL_TIMEOUT_S", 10.0, minimum=0.1),
        }
    else:
        _db["CONN_MAX_AGE"] = _conn_max_age_s
        _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("TEST", {})["NAME"] = config.get_str("TEST_DATABASE_NAME", f"test_{_db['NAME']}")

REDIS_URL = config.get_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes={"redis", "rediss", "unix"})

LIBRARY_DIR = config.get_dir("LIBRARY_DIR", BASE_DIR / "var" / "library")
# Files Chorus stores itself: the film catalog's covers (MEDIA_ROOT/covers/), served by Chorus.
MEDIA_ROOT = config.get_dir("MEDIA_ROOT", BASE_DIR / "var" / "media")
STATIC_ROOT = config.get_dir("STATIC_ROOT", BASE_DIR / "var" / "static")
STATIC_URL = "/static/"
# Uploaded and collected files get the process' umask, not a fixed 0644: `make run` runs with
# umask 077, so everything under var/ is the owner's alone.
FILE_UPLOAD_PERMISSIONS = None
STATICFILES_DIRS = [BASE_DIR / "project" / "static"]
# Hashed, compressed files served by WhiteNoise (`make run` runs collectstatic). With
# STATIC_MANIFEST=0 (tests, development) files are served straight from the source tree.
STATIC_MANIFEST = config.get_bool("STATIC_MANIFEST", True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
WHITENOISE_AUTOREFRESH = not STATIC_MANIFEST

FFMPEG_BINARY = config.get_str("FFMPEG_BINARY", "ffmpeg")
FFPROBE_BINARY = config.get_str("FFPROBE_BINARY", "ffprobe")
# Largest audio file the web upload accepts, in megabytes.
UPLOAD_MAX_MB = config.get_int("UPLOAD_MAX_MB", 512, minimum=1)
# Concurrent ?format= transcodes (one ffmpeg each): per user, and for all web processes
# together (counted in Redis, each slot a lease renewed while its stream runs, so a killed
# process frees its slots after TRANSCODE_LEASE_S). A transcode whose client takes nothing
# for TRANSCODE_IDLE_S is stopped.
TRANSCODE_MAX_PER_USER = config.get_int("TRANSCODE_MAX_PER_USER", 3, minimum=1)
TRANSCODE_MAX = config.get_int("TRANSCODE_MAX", 2 * (os.cpu_count() or 1), minimum=1)
TRANSCODE_LEASE_S = config.get_float("TRANSCODE_LEASE_S", 30.0, minimum=1)
TRANSCODE_IDLE_S = config.get_float("TRANSCODE_IDLE_S", 60.0, minimum=1)
# The room radio sends a newly connected player this many seconds of audio at once.
RADIO_BURST_S = config.get_float("RADIO_BURST_S", 3.0, minimum=0)

# A Celery process (a worker or beat) serves no page, so it leaves out what only the web
# process uses and whose imports would cost every worker memory it never uses: Daphne's app
# (it only makes `runserver` serve with Daphne, and installs Twisted's reactor on import,
# about 17 MB), ninja's (pydantic: its app only holds the API docs' templates) and the admin's
# discovery of every app's admin module. docs/benchmarks.md ("worker RSS").
CELERY_PROCESS = celery_process(sys.argv[0])
WEB_ONLY_APPS = {"daphne", "ninja"}
# A worker started by `python -m project.worker` (project/worker.py) never runs beat, and so
# leaves out beat's schedule models too (django-celery-beat with its time-zone field and
# cron parser: about 4 MB).
BEAT_ONLY_APPS = {"django_celery_beat"} if worker_entry(sys.argv[0]) else set()

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_celery_beat",
    "django_htmx",
    "django_prometheus",
    "ninja",
    "project.accounts",
    "catalog",
    "rooms",
    "scrobbling",
    "livefeed",
    "project.demo",
]
if CELERY_PROCESS:
    INSTALLED_APPS = ["django.contrib.admin.apps.SimpleAdminConfig" if app == "django.contrib.admin" else app
                      for app in INSTALLED_APPS if app not in WEB_ONLY_APPS | BEAT_ONLY_APPS]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "project.logs.RequestIdMiddleware",
    "project.middleware.RefuseNulInUrl",
    "project.middleware.ApiErrorsAsJson",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    "project.middleware.SyncChain",  # keeps the chain synchronous: fewer thread hops under ASGI
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "project.context_processors.navigation",
                "scrobbling.context_processors.scrobbling",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = config.get_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "chorus",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# Used for one thing: closing a user's open websockets and radio streams in every process
# when a credential is revoked (project/accounts/revocation.py). Room events use the hub.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "project.channel_layer.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "chorus"},
    }
}

# Celery: JSON only, late acks are opted into per idempotent task, tasks are
# enqueued after commit (see catalog.tasks), and every task has a time limit.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = config.get_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30 if CELERY_TASK_TIME_LIMIT > 60 else None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# How often the beat moves on rooms whose track ended while nobody was connected.
ROOMS_CLOCK_SWEEP_S = config.get_float("ROOMS_CLOCK_SWEEP_S", 5.0, minimum=1)
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ALWAYS_EAGER = config.get_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Installed into django-celery-beat's tables when beat starts (editable in the admin).
CELERY_BEAT_SCHEDULE = {
    "scrobbling-sweep": {"task": "scrobbling.tasks.sweep", "schedule": 60.0},
    # Rooms move on at the end of a track even with nobody connected (HTTP clients count).
    "rooms-clock": {"task": "rooms.tasks.clock_sweep", "schedule": ROOMS_CLOCK_SWEEP_S,
                    "options": {"expire_seconds": max(1, round(ROOMS_CLOCK_SWEEP_S))}},
    # The film catalog: Douban's newest every 8 hours, TMDB's changes daily (nothing without a
    # key), and a daily refresh of the titles whose tier says they are due (catalog/sync.py).
    "catalog-douban-newest": {"task": "catalog.tasks.scheduled_sync", "schedule": 8 * 3600.0,
                              "kwargs": {"source": "douban", "kind": "newest"}, "options": {"expire_seconds": 3600}},
    "catalog-tmdb-changes": {"task": "catalog.tasks.scheduled_sync", "schedule": 24 * 3600.0,
                             "kwargs": {"source": "tmdb", "kind": "changes"}, "options": {"expire_seconds": 3600}},
    "catalog-refresh": {"task": "catalog.tasks.scheduled_refresh", "schedule": 24 * 3600.0,
                        "options": {"expire_seconds": 3600}},
    # Live messages older than LIVEFEED_RETENTION_DAYS are deleted in batches (nothing when unset).
    "livefeed-retention": {"task": "livefeed.tasks.retention_sweep", "schedule": 3600.0,
                           "options": {"expire_seconds": 3600}},
}
# The live feed's tasks (its fetchers, its retention) run on their own queue and worker line.
CELERY_TASK_ROUTES = {"livefeed.tasks.*": {"queue": "livefeed"}}
# Live messages are kept this many days (empty or 0: for ever).
LIVEFEED_RETENTION_DAYS = config.get_int("LIVEFEED_RETENTION_DAYS", 0, minimum=0) or None

NINJA_PAGINATION_PER_PAGE = 50
NINJA_PAGINATION_MAX_LIMIT = 500
NINJA_PAGINATION_CLASS = "project.pagination.LimitOffset"  # offsets bounded too

# Listening rooms (see docs/protocol.md).
ROOMS_TICK_S = config.get_float("ROOMS_TICK_S", 5.0, minimum=0.1)
ROOMS_PRESENCE_TTL_MS = config.get_int("ROOMS_PRESENCE_TTL_MS", 15000, minimum=1000)
ROOMS_WAIT_TIMEOUT_S = config.get_float("ROOMS_WAIT_TIMEOUT_S", 10.0, minimum=0)
ROOMS_MAX_STALLS_PER_MINUTE = config.get_int("ROOMS_MAX_STALLS_PER_MINUTE", 3, minimum=0)
ROOMS_LEAD_MIN_MS = config.get_int("ROOMS_LEAD_MIN_MS", 400, minimum=0)
ROOMS_LEAD_MAX_MS = config.get_int("ROOMS_LEAD_MAX_MS", 3000, minimum=0)
ROOMS_CONTROLS_PER_SECOND = config.get_int("ROOMS_CONTROLS_PER_SECOND", 20, minimum=1)
# Browser player: drift at or above this is corrected by a seek; below, by a gentle
# playback-rate nudge of at most ROOMS_MAX_RATE_NUDGE (0.005 = 0.5 %, inaudible on music).
ROOMS_SEEK_THRESHOLD_MS = config.get_int("ROOMS_SEEK_THRESHOLD_MS", 400, minimum=10)
ROOMS_MAX_RATE_NUDGE = config.get_float("ROOMS_MAX_RATE_NUDGE", 0.005, minimum=0)

# Live feed: the fetcher (livefeed/fetcher.py; docs/operations.md "Live feed").
LIVEFEED_LEASE_S = config.get_float("LIVEFEED_LEASE_S", 15.0, minimum=1)  # a killed worker's rooms move after this
LIVEFEED_SCAN_S = config.get_float("LIVEFEED_SCAN_S", 1.0, minimum=0.05)  # how often a worker looks for work
LIVEFEED_STALL_S = config.get_float("LIVEFEED_STALL_S", 30.0, minimum=1)  # a silent socket counts as dropped
LIVEFEED_RECONNECT_MAX_S = config.get_float("LIVEFEED_RECONNECT_MAX_S", 60.0, minimum=0.1)
LIVEFEED_MAX_FAILURES = config.get_int("LIVEFEED_MAX_FAILURES", 10, minimum=1)  # failed connects in a row
LIVEFEED_RECENT = config.get_int("LIVEFEED_RECENT", 200, minimum=1)  # messages a new socket starts with
LIVEFEED_STATS_S = config.get_float("LIVEFEED_STATS_S", 5.0, minimum=0.1)  # live.stats to watchers this often
# How often a fetcher stores what it received and pushes it: the latency it adds, and at most
# 1 / LIVEFEED_FLUSH_S transactions and live.messages frames a second per room.
LIVEFEED_FLUSH_S = config.get_float("LIVEFEED_FLUSH_S", 0.25, minimum=0.01)
# Messages a followed room holds in memory while they wait to be stored (about 1 KB each); at
# this many its socket is not read until flushes make room (livefeed/fetcher.py).
LIVEFEED_BUFFER_MAX = config.get_int("LIVEFEED_BUFFER_MAX", 20_000, minimum=100)

# Live recording (livefeed/recorder.py; docs/operations.md "Live recording"). A channel's own
# output folder, when set, is used instead of LIVEFEED_RECORDINGS_DIR.
LIVEFEED_RECORDINGS_DIR = config.get_dir("LIVEFEED_RECORDINGS_DIR", BASE_DIR / "var" / "recordings")
LIVEFEED_MIN_SEGMENT_S = config.get_float("LIVEFEED_MIN_SEGMENT_S", 10.0, minimum=0)  # shorter segments are discarded
# A recording does not start, and one running stops cleanly, below this much free space.
LIVEFEED_MIN_FREE_MB = config.get_int("LIVEFEED_MIN_FREE_MB", 2048, minimum=0)
# A stream that sends nothing for this long is reconnected (ffmpeg's -rw_timeout).
LIVEFEED_RECORD_STALL_S = config.get_float("LIVEFEED_RECORD_STALL_S", 10.0, minimum=0.5)
# Each post-processing step is tried this many times (backoff between) before it counts as failed.
LIVEFEED_POSTPROCESS_TRIES = config.get_int("LIVEFEED_POSTPROCESS_TRIES", 3, minimum=1)
# Watching an FLV/TS recording: its mp4 remux (codec copy) is cached here, under this many MB
# (least recently watched deleted first); the segment still being recorded is remuxed again
# when asked for after this many seconds (livefeed/playback.py).
LIVEFEED_PLAYBACK_CACHE_DIR = config.get_dir("LIVEFEED_PLAYBACK_CACHE_DIR", BASE_DIR / "var" / "cache" / "playback")
LIVEFEED_PLAYBACK_CACHE_MB = config.get_int("LIVEFEED_PLAYBACK_CACHE_MB", 4096, minimum=1)
LIVEFEED_PLAYBACK_REFRESH_S = config.get_float("LIVEFEED_PLAYBACK_REFRESH_S", 30.0, minimum=0)

# Scrobbling (see docs/protocol.md). Last.fm needs an API account:
# https://www.last.fm/api/account/create. Base URLs are settings so that tests (and
# compatible services) can stand in.
LASTFM_API_KEY = config.get_str("LASTFM_API_KEY", "")
LASTFM_API_SECRET = config.get_str("LASTFM_API_SECRET", "")
LASTFM_API_ROOT = config.get_url("LASTFM_API_ROOT", "https://ws.audioscrobbler.com/2.0/", schemes={"http", "https"})
LASTFM_AUTH_URL = config.get_url("LASTFM_AUTH_URL", "https://www.last.fm/api/auth/", schemes={"http", "https"})
# Libre.fm speaks the Last.fm API with its own keys (any key pair registered at libre.fm).
LIBREFM_API_KEY = config.get_str("LIBREFM_API_KEY", "")
LIBREFM_API_SECRET = config.get_str("LIBREFM_API_SECRET", "")
LIBREFM_API_ROOT = config.get_url("LIBREFM_API_ROOT", "https://libre.fm/2.0/", schemes={"http", "https"})
LIBREFM_AUTH_URL = config.get_url("LIBREFM_AUTH_URL", "https://libre.fm/api/auth/", schemes={"http", "https"})
LISTENBRAINZ_API_ROOT = config.get_url(
    "LISTENBRAINZ_API_ROOT", "https://api.listenbrainz.org", schemes={"http", "https"}
)

# Outgoing requests to addresses users chose (a ListenBrainz-compatible server, ...) never go
# to loopback, private, link-local or other non-public addresses, except inside these
# networks (comma-separated, e.g. 192.168.1.0/24 for a Maloja on the LAN). See project/outbound.py.
OUTBOUND_ALLOW_PRIVATE = config.get_networks("OUTBOUND_ALLOW_PRIVATE", [])

# Plays per request, to send fewer than a service takes (1 = one play per request). Unset
# (None): the most its protocol takes, which also caps these: each client's max_batch in
# scrobbling/clients (Last.fm and Libre.fm 50, ListenBrainz 1000).
SCROBBLING_LASTFM_BATCH = config.get_int("SCROBBLING_LASTFM_BATCH", 0, minimum=0) or None
SCROBBLING_LISTENBRAINZ_BATCH = config.get_int("SCROBBLING_LISTENBRAINZ_BATCH", 0, minimum=0) or None
# A worker's claim on a batch lasts this long; a killed worker's batch is sent again after it.
SCROBBLING_LEASE_S = config.get_int("SCROBBLING_LEASE_S", 120, minimum=5)
SCROBBLING_HTTP_TIMEOUT_S = config.get_float("SCROBBLING_HTTP_TIMEOUT_S", 10.0, minimum=0.1)
# Retry back-off after a "try later" answer: from RETRY_MIN_S doubling to RETRY_MAX_S, with jitter.
SCROBBLING_RETRY_MIN_S = config.get_float("SCROBBLING_RETRY_MIN_S", 5.0, minimum=0)
SCROBBLING_RETRY_MAX_S = config.get_float("SCROBBLING_RETRY_MAX_S", 240.0, minimum=0)
# Fernet keys for secrets at rest (session keys, tokens), comma-separated, newest first.
# Unset: derived from SECRET_KEY (then changing SECRET_KEY means relinking services).
ENCRYPTION_KEYS = config.get_list("ENCRYPTION_KEYS", [])
config.check_fernet_keys("ENCRYPTION_KEYS", ENCRYPTION_KEYS)

# Film catalog, Douban (catalog/clients/douban.py): the newest list and the subject pages. At
# most one request every CATALOG_DOUBAN_MIN_INTERVAL_S seconds to its host across all workers
# (project/ratelimit.py); a request waits at most CATALOG_DOUBAN_WAIT_MAX_S for its turn.
CATALOG_DOUBAN_ROOT = config.get_url("CATALOG_DOUBAN_ROOT", "https://movie.douban.com", schemes={"http", "https"})
CATALOG_DOUBAN_MIN_INTERVAL_S = config.get_float("CATALOG_DOUBAN_MIN_INTERVAL_S", 2.0, minimum=0)
CATALOG_DOUBAN_TIMEOUT_S = config.get_float("CATALOG_DOUBAN_TIMEOUT_S", 15.0, minimum=0.1)
CATALOG_DOUBAN_WAIT_MAX_S = config.get_float("CATALOG_DOUBAN_WAIT_MAX_S", 120.0, minimum=0)
CATALOG_DOUBAN_RETRIES = config.get_int("CATALOG_DOUBAN_RETRIES", 3, minimum=0)

# Film catalog, TMDB (catalog/clients/tmdb.py). The key is a v3 API key (sent as api_key) or a
# v4 read access token (a long JWT, sent as "Authorization: Bearer"); empty: TMDB does not run.
# A secret: never logged. At most CATALOG_TMDB_MAX_PER_S requests a second across all workers.
CATALOG_TMDB_API_ROOT = config.get_url("CATALOG_TMDB_API_ROOT", "https://api.themoviedb.org/3", schemes={"http", "https"})
CATALOG_TMDB_API_KEY = config.get_str("CATALOG_TMDB_API_KEY", "")
CATALOG_TMDB_IMAGE_ROOT = config.get_url(
    "CATALOG_TMDB_IMAGE_ROOT", "https://image.tmdb.org/t/p/", schemes={"http", "https"}
)
CATALOG_TMDB_LANGUAGE = config.get_str("CATALOG_TMDB_LANGUAGE", "zh-CN")
CATALOG_TMDB_TIMEOUT_S = config.get_float("CATALOG_TMDB_TIMEOUT_S", 10.0, minimum=0.1)
CATALOG_TMDB_MAX_PER_S = config.get_float("CATALOG_TMDB_MAX_PER_S", 20.0, minimum=0.1)

# Film catalog sync (catalog/sync.py). A run's worker holds it for CATALOG_SYNC_LEASE_S, renewed
# after every title; a worker killed mid-run is taken over once that has passed. A title that
# failed with a try-later error is tried CATALOG_SYNC_ITEM_RETRIES more times (backoff from
# CATALOG_SYNC_RETRY_FIRST_S). Covers larger than CATALOG_COVER_MAX_BYTES are refused. A refresh
# run re-fetches at most CATALOG_REFRESH_BATCH titles.
CATALOG_SYNC_LEASE_S = config.get_float("CATALOG_SYNC_LEASE_S", 300.0, minimum=1)
CATALOG_SYNC_ITEM_RETRIES = config.get_int("CATALOG_SYNC_ITEM_RETRIES", 3, minimum=0)
CATALOG_SYNC_RETRY_FIRST_S = config.get_float("CATALOG_SYNC_RETRY_FIRST_S", 5.0, minimum=0)
CATALOG_COVER_MAX_BYTES = config.get_int("CATALOG_COVER_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
CATALOG_REFRESH_BATCH = config.get_int("CATALOG_REFRESH_BATCH", 200, minimum=1)

# Live feed, Bilibili (see docs/protocol.md "Live feed: Bilibili"). The socket URL is empty (the
# hosts getDanmuInfo lists, wss://{host}:{wss_port}/sub, the next one at every reconnect), a
# template with {host} {wss_port} {ws_port} {port}, or one fixed URL. The cookie (SESSDATA=...;
# buvid3=...; DedeUserID=...) of a logged-in browser gets full user names instead of masked
# ones; it is a secret: never logged.
LIVEFEED_BILIBILI_API_ROOT = config.get_url(
    "LIVEFEED_BILIBILI_API_ROOT", "https://api.live.bilibili.com", schemes={"http", "https"}
)
LIVEFEED_BILIBILI_NAV_URL = config.get_url(
    "LIVEFEED_BILIBILI_NAV_URL", "https://api.bilibili.com/x/web-interface/nav", schemes={"http", "https"}
)
LIVEFEED_BILIBILI_WS_URL = config.get_str("LIVEFEED_BILIBILI_WS_URL", "")
if LIVEFEED_BILIBILI_WS_URL and not LIVEFEED_BILIBILI_WS_URL.startswith(("ws://", "wss://")):
    raise ConfigError(f"LIVEFEED_BILIBILI_WS_URL={LIVEFEED_BILIBILI_WS_URL!r} is not a ws:// or wss:// URL")
LIVEFEED_BILIBILI_COOKIE = config.get_str("LIVEFEED_BILIBILI_COOKIE", "")
LIVEFEED_BILIBILI_HEARTBEAT_S = config.get_float("LIVEFEED_BILIBILI_HEARTBEAT_S", 30.0, minimum=0.05)
LIVEFEED_BILIBILI_HTTP_TIMEOUT_S = config.get_float("LIVEFEED_BILIBILI_HTTP_TIMEOUT_S", 10.0, minimum=0.1)

# Live feed, Douyin (see docs/protocol.md "Live feed: Douyin"). The signer makes the push
# socket's `signature`: empty (unsigned), the http(s):// URL of a signing service, or the path
# of a JavaScript file defining get_sign(stub) (needs the optional mini-racer package).
LIVEFEED_DOUYIN_ROOT = config.get_url("LIVEFEED_DOUYIN_ROOT", "https://live.douyin.com", schemes={"http", "https"})
LIVEFEED_DOUYIN_WEBCAST_URL = config.get_url(
    "LIVEFEED_DOUYIN_WEBCAST_URL", "wss://webcast100-ws-web-lq.douyin.com/webcast/im/push/v2/", schemes={"ws", "wss"}
)
LIVEFEED_DOUYIN_SIGNER = config.get_str("LIVEFEED_DOUYIN_SIGNER", "")
# The local Douyin simulator (`manage.py live_simulator`), the `simulator` platform's server.
LIVEFEED_SIMULATOR_ROOT = config.get_url("LIVEFEED_SIMULATOR_ROOT", "http://127.0.0.1:8765", schemes={"http", "https"})

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads it from the cookie-free meta tag instead
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
_hsts_preload = config.get_bool("SECURE_HSTS_PRELOAD", False)
if not DEBUG:
    SECURE_SSL_REDIRECT = config.get_bool("SECURE_SSL_REDIRECT", True)
    # Health checks and Prometheus talk plain HTTP to the process itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = config.get_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = config.get_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = config.get_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _hsts_preload
SILENCED_SYSTEM_CHECKS = [] if _hsts_preload else ["security.W021"]

# Prometheus scrapes /metrics with this bearer token; unset: only from localhost.
METRICS_TOKEN = config.get_str("METRICS_TOKEN", "")
# Reverse proxies in front of the web processes (networks or addresses, comma-separated).
# A request from one of them, or carrying Forwarded / X-Forwarded-For / X-Real-IP, is not
# "from this machine" for /metrics. Default: none.
TRUSTED_PROXIES = config.get_networks("TRUSTED_PROXIES", [])

# Who may create an account: closed (staff make accounts in the admin), invite (with an
# invite link staff create at /accounts/invites/) or open (anyone who can reach the site).
SIGNUP = config.get_choice("SIGNUP", "invite", choices=("closed", "invite", "open"))

LOG_LEVEL = config.get_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ConfigError(f"LOG_LEVEL={LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "project.logs.RequestIdFilter"}},
    "formatters": {"json": {"()": "project.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
    },
}
