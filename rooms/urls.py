from django.urls import path

from rooms import radio, views

app_name = "rooms"

urlpatterns = [
    path("", views.index, name="index"),
    path("new", views.create, name="create"),
    path("<slug:slug>/", views.detail, name="detail"),
    path("<slug:slug>/invite/<str:code>", views.invite, name="invite"),
    path("<slug:slug>/settings", views.update_settings, name="settings"),
    path("<slug:slug>/role", views.set_role, name="role"),
    path("<slug:slug>/members/remove", views.member_remove, name="member-remove"),
    path("<slug:slug>/queue/search", views.queue_search, name="queue-search"),
    path("<slug:slug>/queue", views.queue_edit, name="queue"),
    path("<slug:slug>/radio", radio.radio_stream, name="radio"),
    path("<slug:slug>/playlist.m3u", radio.room_playlist, name="playlist"),
]
