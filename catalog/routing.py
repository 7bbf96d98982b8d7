from django.urls import path

from catalog.consumers import SyncRunConsumer, TitleConsumer

websocket_urlpatterns = [
    path("ws/catalog/titles/<int:title_id>/", TitleConsumer.as_asgi()),
    path("ws/catalog/sync/<int:run_id>/", SyncRunConsumer.as_asgi()),
]
