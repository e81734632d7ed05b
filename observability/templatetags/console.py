"""Figures the admin index shows beside its shortcuts, and how the console writes times."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timesince import timesince

from pipeline.models import Question

register = template.Library()


@register.simple_tag
def open_question_count() -> int:
    return Question.objects.open().count()


@register.filter
def when(moment: datetime | None) -> str:
    """A moment to the second, with its time zone and how long ago it was."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}">{}</time> <small class="age">({} ago)</small>',
        local.isoformat(),
        date_format(local, "DATETIME_FORMAT"),
        timesince(moment),
    )
