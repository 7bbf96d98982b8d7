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


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_FORWARDED": "for=203.0.113.9;proto=https"},
        {"HTTP_X_FORWARDED_FOR": "203.0.113.9"},
        {"HTTP_X_REAL_IP": "203.0.113.9"},
        {"HTTP_X_FORWARDED_FOR": "127.0.0.1"},
    ],
    ids=["Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-For-localhost"],
)
def test_metrics_refuse_anything_that_came_through_a_proxy(client, header):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **header)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


@pytest.mark.django_db
def test_metrics_refuse_requests_from_a_trusted_proxy_address(client, settings):
    import ipaddress

    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.2").status_code == 200
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.2").status_code == 200  # not the proxy
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="not-an-address").status_code == 403


def test_trusted_proxies_setting_is_parsed_and_checked(monkeypatch):
    import ipaddress

    from project import config

    monkeypatch.setenv("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert config.get_networks("TRUSTED_PROXIES", []) == [
        ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")
    with pytest.raises(config.ConfigError, match=r"TRUSTED_PROXIES: 'proxy\.local' is not an IP network"):
        config.get_networks("TRUSTED_PROXIES", [])
