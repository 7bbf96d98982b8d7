"""ASGI entry point: HTTP through Django, websockets through Channels."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from project.config import ConfigError, exit_on_config_error

try:
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()
except ConfigError as exc:
    exit_on_config_error(exc)

from channels.routing import ProtocolTypeRouter, URLRouter

from project.accounts.ws import OriginCheck, TokenAuthMiddleware, auth_stack
from project.flow import flow_control
from project.routing import websocket_urlpatterns
from project.wsclose import allow_rfc_close_codes
from project.wsframes import direct_writes

allow_rfc_close_codes()  # so that a message over 64 KiB really closes with 1009, not 1011

# Move everything loaded so far (Django, the apps) out of the collector's sight and collect
# less often: with 1,000 sockets open, full collections of ~300k long-lived objects took
# ~140 ms each and were the worst room fan-out delays (docs/benchmarks.md).
gc.freeze()
gc.set_threshold(50_000, 20, 100)

application = ProtocolTypeRouter(
    {
        # Response bodies wait for slow clients instead of piling up in Daphne's memory.
        "http": flow_control(django_asgi_app),
        # Origin checked as AllowedHostsOriginValidator does; programs without an Origin
        # header may connect with a bearer token only (their cookies are dropped). Under
        # Daphne, fan-outs write one prepared frame to every socket (project/wsframes.py).
        "websocket": direct_writes(OriginCheck(auth_stack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns))))),
    }
)
