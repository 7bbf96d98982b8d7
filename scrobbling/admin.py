from django.contrib import admin, messages

from scrobbling import delivery
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink


@admin.register(Play)
class PlayAdmin(admin.ModelAdmin):
    list_display = ("played_at", "user", "artist_name", "track_title", "source", "room", "track", "sent_on")
    search_fields = ("artist_name", "track_title", "album_title", "user__username")
    list_filter = ("source", "sent_on", "played_at")
    list_select_related = ("user", "room", "track")
    raw_id_fields = ("user", "track", "room")
    date_hierarchy = "played_at"


@admin.register(ScrobblerLink)
class ScrobblerLinkAdmin(admin.ModelAdmin):
    """The encrypted secret is never shown or edited here: users link and relink themselves."""

    list_display = ("user", "service", "account_name", "status", "paused_reason", "failures", "retry_at", "last_sent_at")
    list_filter = ("service", "status")
    search_fields = ("user__username", "account_name")
    list_select_related = ("user",)
    exclude = ("secret",)
    readonly_fields = ("user", "service", "account_name", "paused_at", "failures", "retry_at", "last_error",
                       "last_sent_at", "created_at")


@admin.register(BufferEntry)
class BufferEntryAdmin(admin.ModelAdmin):
    list_display = ("played_at", "user", "service", "play", "attempts", "lease_until", "enqueued_at")
    list_filter = ("service",)
    search_fields = ("user__username",)
    list_select_related = ("user", "play")
    raw_id_fields = ("user", "play")
    readonly_fields = ("lease_token",)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "service", "play", "http_status", "error_code", "reason", "requeue_requested_at")
    list_filter = ("service", "error_code", "http_status")
    search_fields = ("user__username", "reason", "play__artist_name", "play__track_title")
    list_select_related = ("user", "play")
    readonly_fields = ("user", "service", "play", "payload", "http_status", "error_code", "reason", "answer",
                       "created_at", "requeue_requested_at")
    actions = ["requeue"]

    @admin.action(description="Send again (once the user's link is active)", permissions=["change"])
    def requeue(self, request, queryset):
        count = delivery.dead_letters_requeue(ids=list(queryset.values_list("id", flat=True)))
        messages.success(request, f"{count} play(s) will be sent again within a minute where the link is active.")
