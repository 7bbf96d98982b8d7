from django import forms


class ListenBrainzLinkForm(forms.Form):
    token = forms.CharField(
        label="User token", max_length=200,
        help_text="On listenbrainz.org: Settings → User token. Chorus checks it with ListenBrainz before saving.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                      "placeholder": "e.g. 6f1c…-…-…"}),
    )
    api_root = forms.URLField(
        label="Server (optional)", required=False, max_length=300, assume_scheme="https",
        help_text="Only for a self-hosted ListenBrainz-compatible server (Maloja, Koito…): its API root, "
                  "e.g. https://maloja.example.org/apis/listenbrainz. Empty: listenbrainz.org. A server on "
                  "this machine or a private network works only if this server's operator allows it.",
        widget=forms.URLInput(attrs={"placeholder": "https://api.listenbrainz.org"}),
    )
