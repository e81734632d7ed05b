"""Captures the log records a stage emits while it runs, for its StageExecution.

A handler on the root logger recognises records emitted inside a console run by LangGraph's
runnable-config context (which names the run and the task), buffers them per stage in memory,
and the runner stores them in the stage's row (`StageExecution.logs`) when the stage ends: no
statement per record. Each stage keeps at most
GAMED_STAGE_LOG_LIMIT records; the rest are counted and reported in one closing record.
"""

import logging
import threading
from dataclasses import dataclass, field

from django.conf import settings
from langchain_core.runnables.config import var_child_runnable_config

from pipeline.snapshots import capped

# Attributes every record has; `run_id` and `stage` are added by the console's log filter
# (gamed_console/logging.py) and are already implied by where the record is stored.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "run_id",
    "stage",
}
MESSAGE_LIMIT = 4000


@dataclass
class _Buffer:
    limit: int
    records: list[dict] = field(default_factory=list)
    dropped: int = 0


_PLAIN = (str, int, float, bool, type(None))


class StageLogCapture(logging.Handler):
    def __init__(self):
        super().__init__(level=settings.GAMED_STAGE_LOG_LEVEL)
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._buffers_lock = threading.Lock()

    def start_stage(self, run_id: str, task_id: str) -> None:
        with self._buffers_lock:
            self._buffers[(run_id, task_id)] = _Buffer(limit=settings.GAMED_STAGE_LOG_LIMIT)

    def collect(self, run_id: str, task_id: str) -> list[dict]:
        """The stage's records, in order, plus one saying how many were dropped."""
        with self._buffers_lock:
            buffer = self._buffers.pop((run_id, task_id), None)
        if buffer is None:
            return []
        records = buffer.records
        if buffer.dropped:
            limit = buffer.limit
            records.append(
                {
                    "level": logging.WARNING,
                    "level_name": "WARNING",
                    "logger": __name__,
                    "message": f"{buffer.dropped} more log records were dropped: a stage keeps "
                    f"at most {limit} (GAMED_STAGE_LOG_LIMIT).",
                    "time": records[-1]["time"] if records else None,
                    "extra": {"dropped": buffer.dropped},
                }
            )
        return records

    def emit(self, record: logging.LogRecord) -> None:
        config = var_child_runnable_config.get()
        if not config:
            return
        run_id = config.get("configurable", {}).get("gamed_run_id")
        namespace = config.get("metadata", {}).get("langgraph_checkpoint_ns", "")
        buffer = self._buffers.get((run_id, namespace.rpartition(":")[2]))
        if buffer is None:
            return
        if len(buffer.records) >= buffer.limit:
            buffer.dropped += 1
            return
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        extra = {key: record.__dict__[key] for key in record.__dict__.keys() - _STANDARD}
        if extra and not all(isinstance(value, _PLAIN) for value in extra.values()):
            extra = capped(extra, 2048)
        buffer.records.append(
            {
                "level": record.levelno,
                "level_name": record.levelname,
                "logger": record.name,
                "message": message[:MESSAGE_LIMIT],
                "time": record.created,
                "extra": extra,
            }
        )


_capture: StageLogCapture | None = None
_install_lock = threading.Lock()


def capture() -> StageLogCapture:
    """The process's capture handler, installed on the root logger on first use."""
    global _capture
    with _install_lock:
        if _capture is None:
            _capture = StageLogCapture()
            logging.getLogger().addHandler(_capture)
    return _capture
