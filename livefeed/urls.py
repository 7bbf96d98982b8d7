from django.urls import path

from livefeed import views

app_name = "livefeed"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:channel_id>/", views.channel, name="channel"),
    path("<int:channel_id>/start", views.start, name="start"),
    path("<int:channel_id>/stop", views.stop, name="stop"),
    path("<int:channel_id>/remove", views.remove, name="remove"),
    path("sessions/<int:session_id>/", views.session, name="session"),
    path("sessions/<int:session_id>/export.<str:fmt>", views.session_export, name="session-export"),
]
