"""Domain errors raised by pipeline services; each surface maps them once."""


class PipelineError(Exception):
    """Base class. `code` is stable and machine-readable; the message is for people."""

    code = "pipeline_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class UnknownGraph(PipelineError):
    code = "unknown_graph"


class GraphUnavailable(PipelineError):
    """A registered graph whose builder fails or returns something that is not a graph."""

    code = "graph_unavailable"


class InvalidInput(PipelineError):
    code = "invalid_input"


class InvalidContext(InvalidInput):
    code = "invalid_context"


class RunNotFound(PipelineError):
    code = "run_not_found"


class StageNotFound(PipelineError):
    code = "stage_not_found"


class NoFailedStage(StageNotFound):
    code = "no_failed_stage"


class Conflict(PipelineError):
    code = "conflict"


class RetryNotAllowed(Conflict):
    code = "retry_not_allowed"


class AlreadyRetried(Conflict):
    code = "already_retried"


class AlreadyRecovered(Conflict):
    """A later run of the failed run's lineage succeeded: a bulk retry leaves it alone."""

    code = "already_recovered"


class RunCancelled(Exception):
    """Raised inside a run (at a stage boundary or a `progress.tick()`) once it was cancelled."""


class LeaseLost(Exception):
    """This worker no longer owns the run (the reaper or another worker took it over)."""
