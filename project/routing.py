"""Websocket routes of every app, gathered in one list."""

from catalog.routing import websocket_urlpatterns as catalog_ws
from livefeed.routing import websocket_urlpatterns as livefeed_ws
from rooms.routing import websocket_urlpatterns as rooms_ws

websocket_urlpatterns = [*rooms_ws, *livefeed_ws, *catalog_ws]
