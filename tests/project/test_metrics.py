import pytest


@pytest.mark.django_db
def test_metrics_expose_http_and_import_counters(client, imported):
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in body
    assert 'chorus_import_files_total{outcome="imported"}' in body
    assert 'chorus_import_files_total{outcome="skipped"}' in body


@pytest.mark.django_db
def test_metrics_are_not_public(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


@pytest.mark.django_db
def test_stream_requests_are_counted_by_kind(alice_client, track):
    alice_client.get(track.get_stream_url(), HTTP_RANGE="bytes=0-9")
    alice_client.get("/library/tracks/987654/stream")
    body = alice_client.get("/metrics").content.decode()
    assert 'chorus_stream_requests_total{mode="range"}' in body
    assert 'chorus_stream_requests_total{mode="error"}' in body
