from django import forms
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What will use it, e.g. “phone” or “backup script”.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. laptop scrobbler"}),
    )


class InviteCreateForm(forms.Form):
    max_uses = forms.IntegerField(
        label="Uses", min_value=1, max_value=1000, initial=1,
        help_text="How many accounts this link can create (1: a personal invite).",
    )
    expires_in_days = forms.IntegerField(
        label="Expires after (days)", min_value=1, max_value=365, initial=7, required=False,
        help_text="Empty: never expires.",
    )
    note = forms.CharField(
        max_length=100, required=False, help_text="Who it is for; only staff see it.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. Hana's flatmates"}),
    )
