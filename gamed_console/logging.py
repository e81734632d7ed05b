"""The console's own log lines: the run and stage a record was logged in, and JSON lines.

LangGraph executes each node with the node's config in the `var_child_runnable_config` context
variable (parallel siblings too: their threads get a copy of the context), so a record logged
anywhere inside a stage, by any library, can be tied to its run and stage without the stage
passing anything along.
"""

import json
import logging
import sys
from datetime import UTC, datetime

from pipeline.progress import current_run_id


def current_run_and_stage() -> tuple[str | None, str | None]:
    """The run id and stage of the LangGraph node executing in this context, if any."""
    # No node runs before LangChain is imported; commands that run no graph never import it.
    runnable_config = sys.modules.get("langchain_core.runnables.config")
    config = runnable_config.var_child_runnable_config.get() if runnable_config else None
    if not config:
        # Between stages the runner still knows which run it executes.
        return current_run_id(), None
    run_id = (config.get("configurable") or {}).get("gamed_run_id")
    stage = (config.get("metadata") or {}).get("langgraph_node")
    return run_id, stage


class RunContextFilter(logging.Filter):
    """Adds `run_id` and `stage` to every record (None outside a run); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id, stage = current_run_and_stage()
        # A caller that passed them in `extra=` knows better than the context.
        if getattr(record, "run_id", None) is None:
            record.run_id = run_id
        if getattr(record, "stage", None) is None:
            record.stage = stage
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, run_id, stage, exception."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        line = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": _text_or_none(getattr(record, "run_id", None)),
            "stage": _text_or_none(getattr(record, "stage", None)),
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)
