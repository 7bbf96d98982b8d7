from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """183.4 -> '3:03'; 3725 -> '1:02:05'."""
    try:
        total = round(float(seconds))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def duration_long(seconds) -> str:
    """7384 -> '2 h 3 min'; 125 -> '2 min'; 20 -> '20 s' (not '0 min')."""
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours} h {minutes} min"
    if 0 < total < 60:
        return f"{total} s"
    return f"{minutes} min"


@register.filter
def initials(text) -> str:
    words = [w for w in str(text).split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "♪"


@register.filter
def ago(moment) -> str:
    """'just now' within a minute (timesince says '0 minutes'), else '3 minutes ago', '2 days, 4 hours ago'."""
    if not moment:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"
