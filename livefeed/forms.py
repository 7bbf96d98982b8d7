from django import forms


class ChannelAddForm(forms.Form):
    url = forms.CharField(max_length=2000, label="Live room URL",
                          widget=forms.URLInput(attrs={"placeholder": "https://live.douyin.com/… or https://live.bilibili.com/…",
                                                       "autocomplete": "off"}))
    auto_follow = forms.BooleanField(required=False, label="Follow whenever it goes live")
