from django.apps import AppConfig


class LivefeedConfig(AppConfig):
    name = "livefeed"
    verbose_name = "Live streams"
