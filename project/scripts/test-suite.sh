#!/usr/bin/env bash
# make test's suite: once per database.
#   test-suite.sh PYTHON DATABASE...
# The first database runs every test; each later one only the tests that use the database (the
# others cannot differ). One after the other by default. CHORUS_TEST_PARALLEL=1 runs the later
# ones at the same time as the first, each on a Redis database of its own (13, 12, ...): the
# suite spends much of its time waiting on sockets, live servers and subprocesses, so the two
# share 2 cores well (about 17 minutes instead of 27), but the load makes the tests that start
# Celery workers and count on timings slower, and they have failed that way; their output is
# kept and printed, whole, when they end. With REDIS_URL set by the caller the runs always go
# one after the other (no second Redis database is known to be free).
set -uo pipefail
python=$1; shift
databases=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do databases+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
read -r -a pytest_args <<< "${PYTEST_ARGS:-}"

run() {  # run DATABASE ONLY_DATABASE_TESTS REDIS_URL_OR_EMPTY
  if [ -n "$3" ]; then
    CHORUS_TEST_DB=$1 CHORUS_TEST_DATABASE_TESTS_ONLY=$2 REDIS_URL=$3 "$python" -m pytest "${pytest_args[@]}"
  else
    CHORUS_TEST_DB=$1 CHORUS_TEST_DATABASE_TESTS_ONLY=$2 "$python" -m pytest "${pytest_args[@]}"
  fi
}

announce() { echo "chorus: the test suite on $1${2:+ (the tests that use the database)}" >&2; }

status=0
if [ -n "${REDIS_URL:-}" ] || [ "${CHORUS_TEST_PARALLEL:-}" != 1 ] || [ "${#databases[@]}" -lt 2 ]; then
  again=
  for db in "${databases[@]}"; do
    announce "$db" "$again"
    run "$db" "$again" "" || status=1
    again=1
  done
  exit $status
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
redis_db=12
for db in "${databases[@]:1}"; do
  announce "$db" 1
  echo "chorus: ... running alongside; its output follows when it ends" >&2
  run "$db" 1 "redis://127.0.0.1:6379/$redis_db" > "$logs/$db.log" 2>&1 &
  pids+=("$!")
  redis_db=$((redis_db - 1))
done
first=${databases[0]}
announce "$first" ""
run "$first" "" "redis://127.0.0.1:6379/13" || status=1
index=0
for db in "${databases[@]:1}"; do
  wait "${pids[$index]}" || status=1
  announce "$db" 1
  cat "$logs/$db.log"
  index=$((index + 1))
done
exit $status
