from django import forms


class ChannelAddForm(forms.Form):
    url = forms.CharField(max_length=2000, label="Live room URL",
                          widget=forms.URLInput(attrs={"placeholder": "https://live.douyin.com/… or https://live.bilibili.com/…",
                                                       "autocomplete": "off"}))
    auto_follow = forms.BooleanField(required=False, label="Follow whenever it goes live")


class RecordSettingsForm(forms.Form):
    """A channel's recording settings; the service checks them (livefeed/record_settings.py)
    and its refusals land on the field they name."""

    record = forms.BooleanField(required=False, label="Record whenever the room is live")
    segment_s = forms.IntegerField(label="Segment length (s)", min_value=1)
    segment_mb = forms.IntegerField(label="Segment size (MB)", min_value=1)
    quality = forms.CharField(required=False, max_length=30, label="Quality", help_text="Empty: the best.")
    container = forms.ChoiceField(label="Container")
    output_dir = forms.CharField(required=False, max_length=500, label="Output folder",
                                 help_text="Empty: the server's recordings folder.")
    filename_template = forms.CharField(max_length=300, label="File name template",
                                        help_text="{channel}, {title}, {date:%Y-%m-%d_%H-%M-%S}, {index}")

    postprocess = forms.JSONField(required=False, label="Post-processing steps (JSON)",
                                  widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                                  help_text='Staff only. [{"step": "remux", "format": "mp4"}, {"step": "move", '
                                            '"to": "/folder"}, {"step": "command", "run": ["upload", "{path}"]}, '
                                            '{"step": "delete_original"}]')

    def __init__(self, *args, container_choices=(), staff=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["container"].choices = container_choices
        if not staff:
            del self.fields["postprocess"]  # only staff set steps (they run on the server)

    def clean_postprocess(self):
        return self.cleaned_data["postprocess"] or []

    @classmethod
    def for_channel(cls, channel, *, user, data=None):
        from livefeed.models import RecordContainer

        initial = {name: getattr(channel, name) for name in ("record", "segment_s", "segment_mb", "quality",
                                                             "container", "output_dir", "filename_template",
                                                             "postprocess")}
        return cls(data, initial=initial, container_choices=RecordContainer.choices, staff=user.is_staff)
