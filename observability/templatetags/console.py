"""Figures the admin index shows beside its shortcuts."""

from django import template

from pipeline.models import Question

register = template.Library()


@register.simple_tag
def open_question_count() -> int:
    return Question.objects.open().count()
