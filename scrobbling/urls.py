from django.urls import path

from scrobbling import views

app_name = "scrobbling"

urlpatterns = [
    path("", views.index, name="index"),
]
