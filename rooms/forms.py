from django import forms

from rooms.models import Room


class RoomCreateForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. Friday night mix"}))
    visibility = forms.ChoiceField(
        choices=Room.Visibility.choices, initial=Room.Visibility.PUBLIC,
        help_text="Private rooms are joined through an invite link.",
    )
    control_policy = forms.ChoiceField(
        choices=Room.ControlPolicy.choices, initial=Room.ControlPolicy.DJS, label="Who controls playback",
    )


class RoomSettingsForm(forms.Form):
    name = forms.CharField(max_length=100)
    visibility = forms.ChoiceField(choices=Room.Visibility.choices)
    control_policy = forms.ChoiceField(choices=Room.ControlPolicy.choices, label="Who controls playback")
