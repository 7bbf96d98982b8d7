"""The outbound guard (project/outbound.py): requests to user-chosen URLs never reach this
machine or its private networks unless OUTBOUND_ALLOW_PRIVATE allows them.

Real sockets throughout: the "internal services" are fake servers on 127.0.0.1 (and
127.0.0.2, another loopback address standing in for a second server), and each test checks
that a refused request never reached them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from project import config, outbound
from tests.scrobbling.fakes import FakeListenBrainz

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def internal():
    """An "internal service" on 127.0.0.1."""
    fake = FakeListenBrainz().start()
    yield fake
    fake.stop()


@pytest.fixture
def no_private(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = []


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.5.4", "private"), ("192.168.1.20", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.251", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::a9fe:a9fe", "link-local"),
])
def test_non_public_addresses_are_refused(no_private, address, kind):
    assert outbound.refusal(address) == kind


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(no_private, address):
    assert outbound.refusal(address) == ""


def test_allowed_networks_open_only_themselves(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = [ipaddress.ip_network("192.168.1.0/24")]
    assert outbound.refusal("192.168.1.50") == ""
    assert outbound.refusal("::ffff:192.168.1.50") == ""
    assert outbound.refusal("192.168.2.50") == "private"
    assert outbound.refusal("127.0.0.1") == "loopback"


def test_the_setting_takes_a_comma_separated_list_and_names_itself_when_wrong(monkeypatch):
    monkeypatch.setenv("OUTBOUND_ALLOW_PRIVATE", "192.168.1.0/24, 127.0.0.1")
    assert config.get_networks("OUTBOUND_ALLOW_PRIVATE", []) == [ipaddress.ip_network("192.168.1.0/24"),
                                                               ipaddress.ip_network("127.0.0.1/32")]
    monkeypatch.setenv("OUTBOUND_ALLOW_PRIVATE", "192.168.1.0/24,lan")
    with pytest.raises(config.ConfigError, match="OUTBOUND_ALLOW_PRIVATE"):
        config.get_networks("OUTBOUND_ALLOW_PRIVATE", [])


@pytest.mark.parametrize(("url", "needle"), [
    ("http://[::1", "not a valid address"),
    ("ftp://music.example.org/", "http:// or https://"),
    ("music.example.org", "http:// or https://"),
    ("http://music example.org/", "spaces"),
    ("http://music.example.org\x00/", "control characters"),
    ("http://127.0.0.1:99999/", "not a valid address"),
    ("http:///no-host", "names no host"),
    ("", "empty"),
    ("http://127.0.0.1:8000/apis/listenbrainz", "127.0.0.1 is a private address (loopback)"),
    ("http://localhost:8000/", "localhost resolves to 127.0.0.1"),
    ("http://2130706433/", "resolves to 127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"),
])
def test_check_url_refuses_with_a_sentence(no_private, url, needle):
    with pytest.raises(outbound.URLRefused) as caught:
        outbound.check_url(url)
    assert needle in str(caught.value)


def test_check_url_passes_public_addresses(no_private):
    assert outbound.check_url(" https://93.184.215.14/apis/listenbrainz ") == "https://93.184.215.14/apis/listenbrainz"


def test_a_request_to_a_loopback_server_is_refused_and_never_arrives(no_private, internal, caplog):
    with outbound.http_client(timeout_s=5) as http, pytest.raises(outbound.AddressRefused) as caught:
        http.get(f"{internal.url}/1/validate-token")
    [logged] = [r for r in caplog.records if r.name == "project.outbound"]
    assert (logged.levelname, logged.address, logged.kind) == ("WARNING", "127.0.0.1", "loopback")
    assert "127.0.0.1 is a private address (loopback)" in str(caught.value)
    assert "OUTBOUND_ALLOW_PRIVATE" in str(caught.value)
    assert isinstance(caught.value, httpx.ConnectError)  # clients that know only httpx see a failed connection
    assert internal.requests == []


def test_a_host_name_that_resolves_to_loopback_is_refused(no_private, internal):
    port = internal.url.rsplit(":", 1)[1]
    with outbound.http_client(timeout_s=5) as http, pytest.raises(outbound.AddressRefused, match="localhost resolves"):
        http.get(f"http://localhost:{port}/1/validate-token")
    assert internal.requests == []


def test_an_allowed_network_is_reached(settings, internal):
    settings.OUTBOUND_ALLOW_PRIVATE = LOOPBACK
    port = internal.url.rsplit(":", 1)[1]
    with outbound.http_client(timeout_s=5) as http:
        assert http.get(f"{internal.url}/1/validate-token?token=x").json()["valid"] is False
        assert http.get(f"http://localhost:{port}/1/validate-token?token=x").status_code == 200
    assert len(internal.requests) == 2


def test_a_redirect_to_a_private_address_is_refused(settings, internal):
    """The first server is allowed (127.0.0.2 stands for a public one); it redirects to an
    internal one, which must not be reached."""
    settings.OUTBOUND_ALLOW_PRIVATE = [ipaddress.ip_network("127.0.0.2/32")]
    front = FakeListenBrainz(host="127.0.0.2").start()
    try:
        front.redirect_to = internal.url
        with outbound.http_client(timeout_s=5) as http, pytest.raises(outbound.AddressRefused, match=r"127\.0\.0\.1"):
            http.get(f"{front.url}/1/validate-token")
        assert [r.status for r in front.requests] == [307]
        assert internal.requests == []
    finally:
        front.stop()


def test_dns_rebinding_is_caught_when_the_socket_opens(no_private, internal, monkeypatch):
    """The name resolves to a public address when the form checks it, and to 127.0.0.1 when
    the request goes out: the address connected to is the one checked."""
    port = int(internal.url.rsplit(":", 1)[1])
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["93.184.215.14", "127.0.0.1"])
    lookups = []

    def rebinding(host, *args, **kwargs):
        if host != "music.rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://music.rebind.test:{port}/1/validate-token"
    assert outbound.check_url(url) == url  # public, at this moment
    with outbound.http_client(timeout_s=5) as http, pytest.raises(outbound.AddressRefused,
                                                                   match=r"resolves to 127\.0\.0\.1"):
        http.get(url)
    assert len(lookups) == 2
    assert internal.requests == []


def test_the_async_client_is_guarded_too(settings, internal):
    async def fetch(url):
        async with outbound.async_http_client(timeout_s=5) as http:
            return (await http.get(url)).status_code

    settings.OUTBOUND_ALLOW_PRIVATE = []
    with pytest.raises(outbound.AddressRefused):
        asyncio.run(fetch(f"{internal.url}/1/validate-token"))
    assert internal.requests == []
    settings.OUTBOUND_ALLOW_PRIVATE = LOOPBACK
    assert asyncio.run(fetch(f"{internal.url}/1/validate-token")) == 400
    assert len(internal.requests) == 1


def test_proxies_from_the_environment_are_not_used(no_private, internal, monkeypatch):
    """A proxy would resolve the name itself, past the guard."""
    monkeypatch.setenv("HTTP_PROXY", internal.url)
    monkeypatch.setenv("ALL_PROXY", internal.url)
    with outbound.http_client(timeout_s=5) as http, pytest.raises(outbound.AddressRefused):
        http.get("http://127.0.0.3:9/")
    assert internal.requests == []


# --- TLS: the certificate and SNI are for the host name, not the address connected to --------


def _certificate(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@contextlib.contextmanager
def _tls_server(tmp_path):
    """(port, certificate path, server names seen): an HTTPS server on loopback with a
    self-signed certificate for localhost."""
    cert_path, key_path = _certificate(tmp_path)
    server_names: list[str] = []
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    server_context.sni_callback = lambda sock, name, context: server_names.append(name)

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert_path, server_names
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def _wss_server(tmp_path):
    """(port, certificate path): a websocket server over TLS on loopback, with a self-signed
    certificate for localhost, that holds every connection open until the client closes it."""
    from websockets.asyncio.server import serve

    cert_path, key_path = _certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)

    async def handler(ws):
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        yield server.sockets[0].getsockname()[1], cert_path


async def _assert_opens_when_trusted(url: str, cert_path: str) -> None:
    """The same socket opens once its certificate is trusted: a refusal was the certificate's."""
    from websockets.asyncio.client import connect

    async with connect(url, ssl=ssl.create_default_context(cafile=cert_path)) as trusted:
        assert trusted.protocol.state.name == "OPEN"


def test_tls_verifies_the_host_name_and_sends_it_as_sni(settings, tmp_path):
    settings.OUTBOUND_ALLOW_PRIVATE = LOOPBACK
    with _tls_server(tmp_path) as (port, cert_path, server_names):
        trust = ssl.create_default_context(cafile=cert_path)
        with outbound.http_client(timeout_s=5, verify=trust) as http:
            assert http.get(f"https://localhost:{port}/").text == "hello"
            # The certificate names localhost only: by address, verification fails.
            with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|IP address mismatch"):
                http.get(f"https://127.0.0.1:{port}/")
        assert server_names[0] == "localhost"


def test_every_client_shares_one_verifying_tls_context(settings, tmp_path):
    """One context a process (loading the CA bundle costs about 1 MB each time), and it
    verifies: a certificate no authority signed is refused by the guarded clients, the plain
    ones and the live platforms' sockets alike."""
    from project import outside

    settings.OUTBOUND_ALLOW_PRIVATE = LOOPBACK
    shared = outbound.tls_context()
    assert shared is outbound.tls_context()
    assert shared.verify_mode == ssl.CERT_REQUIRED
    assert shared.check_hostname
    assert outbound.wss_context("wss://broadcastlv.chat.bilibili.com/sub") is shared
    assert outbound.wss_context("ws://127.0.0.1:8765/webcast/im/push/v2/") is None
    with _tls_server(tmp_path) as (port, _, _):
        for client in (outbound.http_client(timeout_s=5), outside.http_client(timeout_s=5)):
            with client as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                http.get(f"https://localhost:{port}/")
