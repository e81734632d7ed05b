"""System checks `manage.py check` (and the commands that run checks) report."""

from django.core.checks import Warning, register


@register()
def graphs_can_be_built(app_configs=None, **kwargs) -> list[Warning]:
    """A graph that cannot be built is refused when used; the others keep working, so this is
    a warning, not an error (`check --fail-level WARNING` makes it fail a deploy)."""
    from pipeline.graphs import graph_problems

    return [
        Warning(problem, hint="Fix its builder or remove it from GAMED_GRAPHS.", id="pipeline.W001")
        for problem in graph_problems().values()
    ]
