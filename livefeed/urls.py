from django.urls import path

from livefeed import record_views, views

app_name = "livefeed"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:channel_id>/", views.channel, name="channel"),
    path("<int:channel_id>/start", views.start, name="start"),
    path("<int:channel_id>/stop", views.stop, name="stop"),
    path("<int:channel_id>/remove", views.remove, name="remove"),
    path("sessions/<int:session_id>/", views.session, name="session"),
    path("sessions/<int:session_id>/export.<str:fmt>", views.session_export, name="session-export"),
    path("sessions/<int:session_id>/comments.<str:fmt>", record_views.session_comments, name="session-comments"),
    path("<int:channel_id>/recording", views.record_settings, name="record-settings"),
    path("recordings/<int:recording_id>/delete", views.recording_delete, name="recording-delete"),
    path("segments/<int:segment_id>/video", record_views.segment_video, name="segment-video"),
    path("segments/<int:segment_id>/playable.mp4", record_views.segment_playable, name="segment-playable"),
    path("recordings/<int:recording_id>/watch", views.recording_watch, name="recording-watch"),
    path("segments/<int:segment_id>/comments.<str:fmt>", record_views.segment_comments, name="segment-comments"),
]
