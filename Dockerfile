# One image for every Chorus process: the web server (Daphne), the Celery worker and
# Celery beat. compose.yaml picks the process with `command:`; the default is the web server.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg and ffprobe read tags of odd files, make demo audio and transcode streams.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements/ requirements/
RUN pip install -r requirements/base.txt

# The code, named folder by folder: the checkout's .env, .venv and var/ (database, demo
# password, local Redis data) must never end up in an image. A new app folder is added here.
COPY manage.py pyproject.toml ./
COPY project/ project/
COPY templates/ templates/
COPY catalog/ catalog/
COPY rooms/ rooms/
COPY scrobbling/ scrobbling/
COPY livefeed/ livefeed/

# Bytecode for Chorus's own modules, once: PYTHONDONTWRITEBYTECODE (above) stops Python from
# writing it at run time, so without this every process would compile the code from source
# at each start (slower, and about 2 MB more memory a process; docs/benchmarks.md).
RUN python -m compileall -q project catalog rooms scrobbling livefeed

# Hashed, compressed CSS/JS for WhiteNoise, baked into the image so that every container has
# them. Settings need a secret and a host name to load; these two exist only for this step.
RUN SECRET_KEY=collectstatic-only-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH \
    ALLOWED_HOSTS=build.invalid \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    python manage.py collectstatic --noinput -v 0

# Run as an unprivileged user. /library is where compose.yaml mounts the music library;
# a new named volume takes over this ownership.
RUN useradd --create-home --uid 1000 --user-group chorus \
    && mkdir -p /library /app/var \
    && chown -R chorus:chorus /library /app/var
USER chorus

ENV LIBRARY_DIR=/library

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "--access-log", "/dev/null", "project.asgi:application"]
