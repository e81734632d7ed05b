from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Pipeline"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from pipeline import checks, shutdown  # noqa: F401  (checks registers the system checks)

        post_spawn.connect(shutdown.on_worker_spawn, dispatch_uid="gamed-worker-shutdown")
