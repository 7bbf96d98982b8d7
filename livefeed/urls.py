from django.urls import path

from livefeed import views

app_name = "livefeed"

urlpatterns = [
    path("", views.index, name="index"),
]
