"""Who may see runs: one rule for admin and the API. Apart from `auth` so admin, which every
manage.py command loads, does not import django-ninja."""

from django.contrib.auth.models import AbstractBaseUser


def can_view_runs(user: AbstractBaseUser) -> bool:
    """*Can view* or *Can change* pipeline runs."""
    return user.has_perm("pipeline.view_pipelinerun") or user.has_perm(
        "pipeline.change_pipelinerun"
    )
