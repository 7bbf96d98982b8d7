from django import forms
from django.conf import settings


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "audio/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class ImportForm(forms.Form):
    path = forms.CharField(
        max_length=1024,
        label="Folder",
        help_text="A folder inside the library folder; relative paths start there.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["path"].initial = str(settings.LIBRARY_DIR)


class UploadForm(forms.Form):
    files = MultipleFileField(label="Audio files", help_text="MP3, FLAC, Ogg, Opus, M4A, WAV …")
