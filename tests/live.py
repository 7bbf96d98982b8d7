"""Fixtures for tests that need a real server or browser (filled in by the browser test work)."""
