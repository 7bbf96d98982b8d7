from django.urls import path

from catalog.consumers import TitleConsumer

websocket_urlpatterns = [
    path("ws/catalog/titles/<int:title_id>/", TitleConsumer.as_asgi()),
]
