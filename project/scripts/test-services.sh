#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer before the test suite runs.
#   test-services.sh [DATABASE...]   the databases the suite will run on (default: postgres sqlite);
#                                    SQLite needs no server, so PostgreSQL is skipped without "postgres".
# DATABASE_URL / REDIS_URL win when set; otherwise the standard local ports,
# starting the local servers when they are installed but stopped.
set -uo pipefail
databases=" ${*:-postgres sqlite} "

wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "chorus: $name is not answering" >&2
  return 1
}

if [ -z "${DATABASE_URL:-}" ] && [[ "$databases" == *" postgres "* ]]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      version=$(ls /etc/postgresql | sort -V | tail -n 1)
      echo "chorus: starting PostgreSQL $version" >&2
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    else
      echo "chorus: PostgreSQL is not running on 127.0.0.1:5432 and is not installed here." >&2
      echo "        Install it (sudo apt-get install postgresql) or set DATABASE_URL." >&2
      exit 1
    fi
  fi
  wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432 || exit 1
fi

if [ -z "${REDIS_URL:-}" ]; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "chorus: starting redis-server on 127.0.0.1:6379" >&2
    mkdir -p /tmp/chorus-test-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/chorus-test-redis --logfile /tmp/chorus-test-redis/redis.log
  fi
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping || exit 1
fi
exit 0
