from django.contrib import admin, messages

from livefeed import services
from livefeed.models import (
    LiveChannel,
    LiveMessage,
    LiveMinute,
    LiveSession,
    LiveSessionWord,
    LiveStateChange,
    LiveUserStat,
    LiveWordMinute,
    Recording,
    Segment,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by storage only: shown, never edited or added by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LiveChannel)
class LiveChannelAdmin(admin.ModelAdmin):
    list_display = ("__str__", "platform", "ref", "streamer_name", "desired", "state", "reconnects", "messages_total",
                    "malformed_total", "auto_follow", "lease_owner", "lease_expires_at", "record", "record_state",
                    "added_by")
    list_filter = ("platform", "state", "desired", "auto_follow", "record", "record_state")
    search_fields = ("ref", "title", "streamer_name", "streamer_id", "added_by__username")
    list_select_related = ("added_by",)
    raw_id_fields = ("added_by",)
    # The fetcher's fields: changed through the services (the actions), never by hand.
    readonly_fields = ("platform", "ref", "state", "state_changed_at", "desired", "last_error", "reconnects",
                       "consecutive_failures", "next_check_at", "lease_owner", "lease_token", "lease_expires_at",
                       "current_session", "messages_total", "malformed_total", "malformed_by_kind", "last_message_at",
                       "created_at", "updated_at",
                       # the recorder's (livefeed/recorder.py)
                       "record_state", "record_state_changed_at", "record_error", "record_failures",
                       "record_next_try_at", "record_lease_owner", "record_lease_token", "record_lease_expires_at")
    actions = ["follow", "unfollow"]

    @admin.action(description="Follow (start)")
    def follow(self, request, queryset):
        for channel in queryset:
            services.channel_follow(channel_id=channel.pk, actor=request.user)
        messages.success(request, f"{queryset.count()} channel(s) will be followed within a few seconds.")

    @admin.action(description="Stop following")
    def unfollow(self, request, queryset):
        for channel in queryset:
            services.channel_unfollow(channel_id=channel.pk, actor=request.user)
        messages.success(request, f"{queryset.count()} channel(s) will stop within a few seconds.")

    def get_deleted_objects(self, objs, request):
        """A summary instead of Django's list of every related row (a busy channel has
        millions of messages; listing them would never finish)."""
        channels = list(objs)
        summary = [f"{channel}: its sessions, messages and statistics" for channel in channels]
        perms_needed = set() if self.has_delete_permission(request) else {"live channel"}
        return summary, {"live channels": len(channels)}, perms_needed, []

    def delete_queryset(self, request, queryset):
        for channel in queryset:
            services.channel_remove(channel_id=channel.pk, actor=request.user)

    def delete_model(self, request, obj):
        services.channel_remove(channel_id=obj.pk, actor=request.user)


@admin.register(LiveSession)
class LiveSessionAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "started_at", "ended_at", "end_reason", "messages_total", "distinct_users",
                    "peak_viewers", "gift_value", "gift_value_unit")
    list_filter = ("end_reason", "channel__platform", "started_at")
    search_fields = ("title_at_start", "channel__ref", "channel__title")
    list_select_related = ("channel",)
    date_hierarchy = "started_at"
    actions = ["close"]

    @admin.action(description="End the session (stopped)", permissions=["view"])
    def close(self, request, queryset):
        closed = sum(services.session_close(session_id=s.pk, reason=LiveSession.EndReason.STOPPED) for s in queryset)
        messages.success(request, f"{closed} session(s) ended.")


@admin.register(LiveMessage)
class LiveMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "user_name", "content", "gift_count", "gift_value", "ts_ms", "session", "channel")
    list_filter = ("type",)
    search_fields = ("=platform_msg_id", "=user_id", "user_name", "content")
    list_select_related = ("session", "channel")
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page


@admin.register(LiveUserStat)
class LiveUserStatAdmin(ReadOnlyAdmin):
    list_display = ("user_name", "user_id", "session", "messages", "chats", "gift_value", "likes")
    search_fields = ("=user_id", "user_name")
    list_select_related = ("session",)
    show_full_result_count = False


@admin.register(LiveMinute)
class LiveMinuteAdmin(ReadOnlyAdmin):
    list_display = ("session", "minute", "messages", "chats", "gifts", "likes", "members", "gift_value", "viewers")
    list_select_related = ("session",)
    show_full_result_count = False


@admin.register(LiveWordMinute)
class LiveWordMinuteAdmin(ReadOnlyAdmin):
    list_display = ("session", "minute", "word", "count")
    search_fields = ("word",)
    show_full_result_count = False


@admin.register(LiveSessionWord)
class LiveSessionWordAdmin(ReadOnlyAdmin):
    list_display = ("session", "word", "count")
    search_fields = ("word",)
    show_full_result_count = False


@admin.register(LiveStateChange)
class LiveStateChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "channel", "session", "from_state", "to_state", "reason")
    list_filter = ("to_state", "from_state")
    search_fields = ("reason", "channel__ref")
    list_select_related = ("channel",)
    date_hierarchy = "at"


class SegmentInline(admin.TabularInline):
    model = Segment
    fields = ("index", "state", "file_path", "started_at_ms", "offset_s", "duration_s", "size_bytes", "video_codec",
              "width", "height", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Recording)
class RecordingAdmin(ReadOnlyAdmin):
    """Recordings and their state machine, written by the recorder only."""

    list_display = ("__str__", "channel", "state", "started_at", "ended_at", "segments_total", "size_bytes",
                    "duration_s", "last_error")
    list_filter = ("state",)
    search_fields = ("channel__ref", "channel__title", "title")
    list_select_related = ("channel",)
    raw_id_fields = ("channel", "session")
    inlines = [SegmentInline]


@admin.register(Segment)
class SegmentAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "state", "file_path", "duration_s", "size_bytes", "video_codec", "created_at")
    list_filter = ("state",)
    search_fields = ("file_path",)
    raw_id_fields = ("recording",)
