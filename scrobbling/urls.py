from django.urls import path

from scrobbling import views

app_name = "scrobbling"

urlpatterns = [
    path("scrobbles/", views.index, name="index"),
    path("scrobbles/recent", views.recent, name="recent"),
    path("scrobbles/services/", views.services_page, name="services"),
    path("scrobbles/services/status", views.services_status, name="services-status"),
    path("scrobbles/services/<str:service>", views.token_link, name="token-link"),
    path("scrobbles/services/<str:service>/unlink", views.unlink, name="unlink"),
    path("scrobbles/services/<str:service>/discard", views.discard, name="discard"),
    path("scrobbling/<str:service>/connect", views.web_connect, name="connect"),
    path("scrobbling/<str:service>/callback", views.web_callback, name="callback"),
]
