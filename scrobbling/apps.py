from django.apps import AppConfig


class ScrobblingConfig(AppConfig):
    name = "scrobbling"
    verbose_name = "Scrobbling"
