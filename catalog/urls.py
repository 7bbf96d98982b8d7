from django.urls import path

from catalog import film_views, sync_views, views

app_name = "catalog"

urlpatterns = [
    path("library/", views.library_home, name="home"),
    path("library/tracks/", views.track_list, name="tracks"),
    path("library/tracks/playlist.m3u", views.track_search_playlist, name="tracks-playlist"),
    path("library/tracks/<int:track_id>/", views.track_detail, name="track"),
    path("library/tracks/<int:track_id>/stream", views.track_stream, name="track-stream"),
    path("library/artists/", views.artist_list, name="artists"),
    path("library/artists/<int:artist_id>/", views.artist_detail, name="artist"),
    path("library/albums/", views.album_list, name="albums"),
    path("library/albums/<int:album_id>/", views.album_detail, name="album"),
    path("library/albums/<int:album_id>/playlist.m3u", views.album_playlist, name="album-playlist"),
    path("library/import/", views.import_page, name="import"),
    path("library/import/<int:job_id>/", views.import_detail, name="import-detail"),
    path("catalog/", film_views.films, name="films"),
    path("catalog/titles/<int:title_id>/", film_views.title_detail, name="title"),
    path("catalog/titles/<int:title_id>/favorite", film_views.favorite, name="favorite"),
    path("catalog/people/<int:person_id>/", film_views.person_detail, name="person"),
    path("catalog/videos/<int:video_id>/stream", film_views.video_stream, name="video-stream"),
    path("catalog/covers/<path:path>", film_views.cover, name="cover"),
    path("catalog/sync/", sync_views.sync_runs, name="sync-runs"),
    path("catalog/sync/<int:run_id>/", sync_views.sync_run, name="sync-run"),
    path("catalog/sync/<str:source>/start", sync_views.sync_start, name="sync-start"),
]
