"""Live rooms followed, the sessions (broadcasts) followed, their messages and statistics.

A `LiveChannel` is one room on one platform (unique per platform and room reference). The
user says whether Chorus should follow it (`desired`); the fetcher converges `state` to that
and records every transition (`LiveStateChange`). Exactly one fetcher works a channel at a
time: it holds the lease (`lease_owner`, `lease_token`, `lease_expires_at`), renewed by a
heartbeat and taken over only after it expired (livefeed/services.py).

Messages are stored once per (channel, platform message id) and a gift combo once per
(channel, combo id), by unique constraints: storage (livefeed/storage.py) inserts with
ON CONFLICT and the database decides what is new. The statistics a session page shows are
counters kept in the same transaction as the messages (session totals, `LiveUserStat`,
`LiveMinute`, `LiveWordMinute`, `LiveSessionWord`), never a scan of the messages.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from livefeed import messages as kinds
from livefeed.clients import registry
from livefeed.messages import LiveUser, Message


def platform_choices() -> list[tuple[str, str]]:
    """LiveChannel.platform: the registered clients (a new platform needs no migration)."""
    return registry.choices()


class RecordingState(models.TextChoices):
    """A channel's recorder and a recording: idle -> checking -> recording <-> processing -> idle,
    or error (with the reason in last_error / record_error, retried with backoff)."""

    IDLE = "idle", "Idle"
    CHECKING = "checking", "Checking"
    RECORDING = "recording", "Recording"
    PROCESSING = "processing", "Processing a segment"
    ERROR = "error", "Error"


class RecordContainer(models.TextChoices):
    """flv / ts are the stream's bytes copied; mp4 is the flv remuxed (faststart) after each segment."""

    FLV = "flv", "FLV (as streamed)"
    TS = "ts", "MPEG-TS"
    MP4 = "mp4", "MP4 (remuxed after each segment)"


DEFAULT_FILENAME_TEMPLATE = "{channel}/{date:%Y-%m-%d_%H-%M-%S}_{title}"


class LiveChannel(models.Model):
    class State(models.TextChoices):
        IDLE = "idle", "Idle"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        RECONNECTING = "reconnecting", "Reconnecting"
        STOPPING = "stopping", "Stopping"
        ERROR = "error", "Error"
        WAITING = "waiting", "Waiting for the room to go live"

    class Desired(models.TextChoices):
        FOLLOW = "follow", "Follow"
        STOP = "stop", "Stop"

    platform = models.CharField(max_length=20, choices=platform_choices)
    ref = models.CharField(max_length=100, help_text="The platform's room reference (Douyin live_id, Bilibili room id).")
    title = models.CharField(max_length=300, blank=True, default="")
    streamer_name = models.CharField(max_length=200, blank=True, default="")
    streamer_id = models.CharField(max_length=100, blank=True, default="")
    avatar_url = models.URLField(max_length=1000, blank=True, default="")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="live_channels")
    auto_follow = models.BooleanField(default=False, help_text="Follow whenever the room goes live (checked on a schedule).")
    check_interval_s = models.PositiveIntegerField(default=60)

    desired = models.CharField(max_length=10, choices=Desired.choices, default=Desired.STOP,
                               help_text="What the user asked; the fetcher brings the state to it.")
    state = models.CharField(max_length=20, choices=State.choices, default=State.IDLE)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    reconnects = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True, help_text="Auto-follow: when to look whether it is live.")

    lease_owner = models.CharField(max_length=200, blank=True, default="", help_text="The worker that follows it.")
    lease_token = models.CharField(max_length=32, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    current_session = models.ForeignKey("LiveSession", on_delete=models.SET_NULL, null=True, blank=True,
                                        related_name="+")

    # Recording (livefeed/recorder.py): settings the user sets, then the recorder's own state
    # and lease, apart from the fetcher's (one recorder per channel across all workers).
    record = models.BooleanField(default=False, help_text="Record the stream whenever the room is live.")
    segment_s = models.PositiveIntegerField(default=3600, help_text="Close a segment after this many seconds.")
    segment_mb = models.PositiveIntegerField(default=2048, help_text="... or after this many MB, whichever comes first.")
    quality = models.CharField(max_length=30, blank=True, default="", help_text="The platform's quality name; empty = the best.")
    container = models.CharField(max_length=4, choices=RecordContainer.choices, default=RecordContainer.FLV)
    output_dir = models.CharField(max_length=500, blank=True, default="",
                                  help_text="Folder for the files; empty = LIVEFEED_RECORDINGS_DIR.")
    filename_template = models.CharField(max_length=300, default=DEFAULT_FILENAME_TEMPLATE,
                                         help_text="Fields: {channel}, {title}, {date:%Y-%m-%d_%H-%M-%S}, {index}.")
    postprocess = models.JSONField(default=list, blank=True,
                                   help_text='Steps after each segment, in order: [{"step": "remux"}, '
                                             '{"step": "move"|"copy", "to": dir}, {"step": "command", "run": [...]}, '
                                             '{"step": "delete_original"}].')
    record_state = models.CharField(max_length=20, choices=RecordingState.choices, default=RecordingState.IDLE)
    record_state_changed_at = models.DateTimeField(null=True, blank=True)
    record_error = models.CharField(max_length=500, blank=True, default="")
    record_failures = models.PositiveIntegerField(default=0)
    record_next_try_at = models.DateTimeField(null=True, blank=True, help_text="After an error: when to try again.")
    record_lease_owner = models.CharField(max_length=200, blank=True, default="", help_text="The worker that records it.")
    record_lease_token = models.CharField(max_length=32, blank=True, default="")
    record_lease_expires_at = models.DateTimeField(null=True, blank=True)

    messages_total = models.PositiveBigIntegerField(default=0)
    malformed_total = models.PositiveBigIntegerField(default=0)
    malformed_by_kind = models.JSONField(default=dict, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["platform", "ref"], name="livechannel_platform_ref_unique")]
        indexes = [models.Index(fields=["desired", "state"], name="livechannel_desired_state_idx")]

    def __str__(self) -> str:
        return f"{self.platform} {self.ref}" + (f" ({self.title})" if self.title else "")

    @property
    def room_url(self) -> str:
        return registry.get(self.platform).room_url(self.ref)


class LiveSession(models.Model):
    """One broadcast followed. Totals are kept as messages are stored; `gaps` lists the
    stretches ([start_ms, end_ms]) in which nobody was receiving (a take-over, a reconnect)."""

    class EndReason(models.TextChoices):
        ENDED = "ended", "The broadcast ended"
        STOPPED = "stopped", "Stopped by a user"
        ERROR = "error", "Stopped on an error"
        LOST = "lost", "Lost (no fetcher came back)"

    channel = models.ForeignKey(LiveChannel, on_delete=models.CASCADE, related_name="sessions")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=10, choices=EndReason.choices, blank=True, default="")
    title_at_start = models.CharField(max_length=300, blank=True, default="")
    peak_viewers = models.PositiveIntegerField(default=0)
    messages_total = models.PositiveBigIntegerField(default=0)
    totals = models.JSONField(default=dict, blank=True, help_text="Stored messages per type.")
    distinct_users = models.PositiveIntegerField(default=0)
    likes_total = models.PositiveBigIntegerField(default=0)
    gift_value = models.PositiveBigIntegerField(default=0, help_text="Total gift value, in gift_value_unit.")
    gift_value_unit = models.CharField(max_length=20, blank=True, default="",
                                       help_text="diamond (Douyin) or gold (Bilibili; 1,000 = 1 CNY).")
    gaps = models.JSONField(default=list, blank=True, help_text="[[start_ms, end_ms], ...] with nobody receiving.")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["channel", "-started_at"], name="livesession_channel_start_idx")]
        constraints = [
            # At most one open session per channel.
            models.UniqueConstraint(fields=["channel"], condition=Q(ended_at__isnull=True),
                                    name="livesession_one_open_per_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} from {self.started_at:%Y-%m-%d %H:%M}"


class LiveMessage(models.Model):
    """One normalised message (livefeed.messages.Message); a gift combo is one row whose
    count is the highest seen and whose platform_msg_id is that of its first message."""

    id = models.BigAutoField(primary_key=True)
    channel = models.ForeignKey(LiveChannel, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="messages")
    type = models.CharField(max_length=16)
    platform_msg_id = models.CharField(max_length=100)
    ts_ms = models.BigIntegerField(help_text="The platform's time of the message.")
    received_ms = models.BigIntegerField()
    user_id = models.CharField(max_length=64, blank=True, default="", help_text="The platform's user id.")
    user_name = models.CharField(max_length=200, blank=True, default="")
    user = models.JSONField(null=True, blank=True, help_text="The rest of the user (display_id, gender, level).")
    content = models.TextField(blank=True, default="")
    extra = models.JSONField(default=dict, blank=True)
    combo_id = models.CharField(max_length=100, null=True, blank=True)
    gift_count = models.PositiveIntegerField(null=True, blank=True)
    gift_value = models.PositiveBigIntegerField(null=True, blank=True, help_text="The gift's total value (unit in extra).")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "platform_msg_id"], name="livemessage_channel_msg_unique"),
            models.UniqueConstraint(fields=["channel", "combo_id"], condition=Q(combo_id__isnull=False),
                                    name="livemessage_channel_combo_unique"),
        ]
        indexes = [
            # The session page: newest first, all types or one type.
            models.Index(fields=["session", "-id"], name="livemessage_session_id_idx"),
            models.Index(fields=["session", "type", "-id"], name="livemessage_session_type_idx"),
            # One user's messages in a channel.
            models.Index(fields=["channel", "user_id", "-id"], name="livemessage_channel_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.platform_msg_id}"

    def to_message(self) -> Message:
        user = None
        if self.user_id or self.user_name or self.user:
            rest = self.user or {}
            user = LiveUser(id=self.user_id, name=self.user_name, display_id=rest.get("display_id", ""),
                            gender=rest.get("gender"), level=rest.get("level"))
        return Message(type=self.type, platform_msg_id=self.platform_msg_id, ts_ms=self.ts_ms, user=user,
                       content=self.content, extra=self.extra or {}, received_ms=self.received_ms)

    def as_json(self) -> dict:
        """The one JSON shape of a message (Message.as_json), from the stored row."""
        return self.to_message().as_json(id=self.pk, session_id=self.session_id)


class LiveUserStat(models.Model):
    """One platform user in one session. The channel's "regulars" are a roll-up of these rows
    over the channel's sessions (livefeed.stats.channel_regulars), not a table of their own:
    it costs no write per message and stays exact after retention deletes messages."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="user_stats")
    channel = models.ForeignKey(LiveChannel, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=64)
    user_name = models.CharField(max_length=200, blank=True, default="")
    messages = models.PositiveIntegerField(default=0)
    chats = models.PositiveIntegerField(default=0)
    gift_value = models.PositiveBigIntegerField(default=0)
    likes = models.PositiveBigIntegerField(default=0)
    first_seen_ms = models.BigIntegerField()
    last_seen_ms = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "user_id"], name="liveuserstat_session_user_unique")]
        indexes = [
            models.Index(fields=["session", "-chats"], name="liveuserstat_session_chats_idx"),
            # Partial: most viewers never send a gift, and their rows' updates then skip this index.
            models.Index(fields=["session", "-gift_value"], condition=Q(gift_value__gt=0),
                         name="liveuserstat_session_gifts_idx"),
            models.Index(fields=["channel", "user_id"], name="liveuserstat_channel_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_name or self.user_id} in session {self.session_id}"


class LiveMinute(models.Model):
    """Per session and minute of platform time (`minute` = ts_ms // 60000): messages per type
    and the viewers seen, for the charts."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="minutes")
    minute = models.BigIntegerField()
    messages = models.PositiveIntegerField(default=0)
    chats = models.PositiveIntegerField(default=0)
    gifts = models.PositiveIntegerField(default=0)
    likes = models.PositiveBigIntegerField(default=0)
    members = models.PositiveIntegerField(default=0)
    gift_value = models.PositiveBigIntegerField(default=0)
    viewers = models.PositiveIntegerField(null=True, blank=True, help_text="Most viewers reported in the minute.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "minute"], name="liveminute_session_minute_unique")]

    def __str__(self) -> str:
        return f"session {self.session_id} minute {self.minute}: {self.messages} messages"


class LiveWordMinute(models.Model):
    """How often a word was said in a session's minute: hot words over the last N minutes
    are a sum over N minutes' rows, never a new segmentation of the messages."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="+")
    minute = models.BigIntegerField()
    word = models.CharField(max_length=50)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "minute", "word"],
                                               name="livewordminute_unique")]

    def __str__(self) -> str:
        return f"{self.word} ×{self.count} (session {self.session_id} minute {self.minute})"


class LiveSessionWord(models.Model):
    """How often a word was said in the whole session (the session's hot words)."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="+")
    word = models.CharField(max_length=50)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "word"], name="livesessionword_unique")]
        indexes = [models.Index(fields=["session", "-count"], name="livesessionword_top_idx")]

    def __str__(self) -> str:
        return f"{self.word} ×{self.count} (session {self.session_id})"


class LiveStateChange(models.Model):
    """Every state transition of a channel, with why."""

    channel = models.ForeignKey(LiveChannel, on_delete=models.CASCADE, related_name="state_changes")
    session = models.ForeignKey(LiveSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    from_state = models.CharField(max_length=20, choices=LiveChannel.State.choices)
    to_state = models.CharField(max_length=20, choices=LiveChannel.State.choices)
    reason = models.CharField(max_length=500, blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["channel", "-at"], name="livestatechange_channel_at_idx")]

    def __str__(self) -> str:
        return f"{self.channel}: {self.from_state} → {self.to_state}"


class Recording(models.Model):
    """One recording of a channel's stream, usually one per session; its files are `Segment`s.
    Totals are summed as segments close."""

    channel = models.ForeignKey(LiveChannel, on_delete=models.CASCADE, related_name="recordings")
    session = models.ForeignKey(LiveSession, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="recordings")
    state = models.CharField(max_length=20, choices=RecordingState.choices, default=RecordingState.CHECKING)
    title = models.CharField(max_length=300, blank=True, default="", help_text="The room's title when it started.")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    duration_s = models.FloatField(default=0)
    segments_total = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    stream_url = models.CharField(max_length=2000, blank=True, default="", help_text="The last pull URL used.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["channel", "-started_at"], name="recording_channel_start_idx")]
        constraints = [
            models.UniqueConstraint(fields=["channel"], condition=Q(ended_at__isnull=True),
                                    name="recording_one_open_per_channel"),
        ]

    def __str__(self) -> str:
        return f"recording of {self.channel} from {self.started_at:%Y-%m-%d %H:%M}"


class Segment(models.Model):
    """One file of a recording. `started_at_ms` / `ended_at_ms` are wall-clock ms since the
    epoch of the segment's first and last frame (measured when ffmpeg opened the segment,
    corrected by the stream's own timestamps); `offset_s` is where it starts inside the
    session, so a message at ts_ms is at (ts_ms - started_at_ms) / 1000 s in this file."""

    class State(models.TextChoices):
        RECORDING = "recording", "Recording"
        PROCESSING = "processing", "Post-processing"
        DONE = "done", "Done"
        FAILED = "failed", "A step failed (the file is kept)"
        DISCARDED = "discarded", "Discarded (too short)"

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="segments")
    index = models.PositiveIntegerField()
    file_path = models.CharField(max_length=1000, unique=True, help_text="The file now (after move/remux steps).")
    original_path = models.CharField(max_length=1000, blank=True, default="", help_text="The file ffmpeg wrote.")
    started_at_ms = models.BigIntegerField(null=True, blank=True)
    ended_at_ms = models.BigIntegerField(null=True, blank=True)
    offset_s = models.FloatField(default=0, help_text="Start inside the session (s).")
    duration_s = models.FloatField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    video_codec = models.CharField(max_length=30, blank=True, default="")
    audio_codec = models.CharField(max_length=30, blank=True, default="")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    checksum = models.CharField(max_length=64, blank=True, default="", help_text="sha256 of the final file.")
    state = models.CharField(max_length=20, choices=State.choices, default=State.RECORDING)
    error = models.CharField(max_length=500, blank=True, default="")
    log_path = models.CharField(max_length=1000, blank=True, default="", help_text="ffmpeg's full log for it.")
    steps = models.JSONField(default=list, blank=True,
                             help_text="Each post-processing step: {step, ok, attempts, error, path, at}.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["recording_id", "index"]
        constraints = [models.UniqueConstraint(fields=["recording", "index"], name="segment_recording_index_unique")]

    def __str__(self) -> str:
        return f"segment {self.index} of recording {self.recording_id}"


# Message types whose rows carry a gift (counted in gift value).
GIFT_TYPES = (kinds.GIFT, kinds.SUPER_CHAT, kinds.GUARD)
