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
