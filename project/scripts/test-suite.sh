#!/usr/bin/env bash
# make test's suite: once per database, one database after the other.
#   test-suite.sh PYTHON DATABASE...
# The first database runs every test; each later one only the tests that use the database (the
# others cannot differ). Each database's run has two parts:
#   1. every test not marked `alone`, spread over CHORUS_TEST_WORKERS pytest-xdist worker
#      processes (default 4), a whole file to one worker (module fixtures are made once): the
#      suite spends most of its time waiting on sockets, live servers and subprocesses, so four
#      share 2 cores well. Each worker has its own test database, SQLite folder and Redis
#      database (tests/env.py: REDIS_URL's number minus the worker's index, 13 to 10 by default).
#   2. the tests marked `alone` (they start Celery workers or `make run`, or time processes
#      against each other: under load they have failed), one at a time with nothing beside them.
# CHORUS_TEST_WORKERS=1 runs everything in one pytest, one test at a time, as before.
set -uo pipefail
python=$1; shift
databases=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do databases+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
read -r -a pytest_args <<< "${PYTEST_ARGS:-}"
# Bytecode caches are written (to __pycache__, which git ignores) even where the environment
# says PYTHONDONTWRITEBYTECODE: without them each pytest process rewrites and compiles every
# test module again (collecting took 10 s a process instead of 4.4 s here), and so does every
# server and worker the tests start with Chorus's own modules.
export PYTHONDONTWRITEBYTECODE=

workers=${CHORUS_TEST_WORKERS:-4}
if ! [[ "$workers" =~ ^[0-9]+$ ]] || [ "$workers" -lt 1 ]; then
  echo "chorus: CHORUS_TEST_WORKERS=$workers is not a number of at least 1" >&2
  exit 2
fi

pytest() {  # pytest DATABASE ONLY_DATABASE_TESTS ARG...: pytest's exit status
  local db=$1 again=$2; shift 2
  CHORUS_TEST_DB=$db CHORUS_TEST_DATABASE_TESTS_ONLY=$again "$python" -m pytest "$@" "${pytest_args[@]}"
}

run() {  # run DATABASE ONLY_DATABASE_TESTS: 0 when its tests passed
  local db=$1 again=$2
  if [ "$workers" -eq 1 ]; then
    pytest "$db" "$again"
    return
  fi
  # Exit status 5 is "no tests ran": a PYTEST_ARGS selection may leave one part empty, not both.
  pytest "$db" "$again" -n "$workers" --dist loadfile --no-loadscope-reorder -m "not alone"
  local spread=$?
  echo "chorus: ... the tests marked alone, one at a time" >&2
  pytest "$db" "$again" -m alone
  local alone=$?
  [ $spread -eq 5 ] && [ $alone -eq 5 ] && return 5
  { [ $spread -eq 0 ] || [ $spread -eq 5 ]; } && { [ $alone -eq 0 ] || [ $alone -eq 5 ]; }
}

status=0
again=
for db in "${databases[@]}"; do
  echo "chorus: the test suite on $db${again:+ (the tests that use the database)}" >&2
  run "$db" "$again" || status=1
  again=1
done
exit $status
