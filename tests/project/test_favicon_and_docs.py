"""Small things every visitor's browser asks for: /favicon.ico, and an API docs page that fits a phone."""

import pytest


def test_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert "max-age=604800" in response["Cache-Control"]
    body = b"".join(response.streaming_content)
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert int.from_bytes(body[4:6], "little") >= 1  # with at least one image


def test_favicon_answers_head_and_refuses_post(client):
    assert client.head("/favicon.ico").status_code == 200
    assert client.post("/favicon.ico").status_code == 405


@pytest.mark.django_db
def test_api_docs_have_a_mobile_viewport_and_chorus_icon(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "chorus/icon.svg" in page
    assert "swagger-ui-bundle.js" in page  # still the real Swagger page
