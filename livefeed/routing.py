from django.urls import path

from livefeed.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/<int:channel_id>/", LiveConsumer.as_asgi()),
]
