"""The suite runs on SQLite as well as PostgreSQL (`make test` runs both): on SQLite the tests
marked postgres_only are deselected, never skipped, and a selection of only those passes; the
run after the first database leaves out the tests that never touch the database."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

# Run on two recording paths: "one statement" (postgres_only) and "orm".
ONE_TEST = "tests/scrobbling/test_recording.py::test_a_play_is_recorded_with_counts"


def run_pytest_on_sqlite(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CHORUS_TEST_DATABASE_TESTS_ONLY": "",
        **extra_env,
        "CHORUS_TEST_DB": "sqlite",
        # Its own file, whatever database this run is on.
        "TEST_DATABASE_NAME": f"{os.environ.get('TEST_DATABASE_NAME') or 'test_chorus'}_nested",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=240,
    )


def test_postgres_only_cases_are_deselected_on_sqlite_and_the_rest_runs():
    result = run_pytest_on_sqlite(ONE_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 passed" in summary, summary
    assert "1 deselected" in summary, summary
    assert "skipped" not in summary


def test_a_selection_of_only_postgres_only_tests_passes_on_sqlite_with_nothing_to_run():
    result = run_pytest_on_sqlite(f"{ONE_TEST}[one statement]")
    assert result.returncode == 0, result.stdout + result.stderr  # not 5, "no tests ran"
    assert "1 deselected" in result.stdout.strip().splitlines()[-1]


def test_a_second_database_run_leaves_out_the_tests_that_never_touch_the_database():
    database_free = f"{__file__}::test_a_selection_of_only_postgres_only_tests_passes_on_sqlite_with_nothing_to_run"
    result = run_pytest_on_sqlite(ONE_TEST, database_free, CHORUS_TEST_DATABASE_TESTS_ONLY="1")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 passed" in summary, summary  # the "orm" case: it uses the database
    assert "2 deselected" in summary, summary  # the PostgreSQL-only case, and the one without a database
