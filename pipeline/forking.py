"""Copying a checkpoint into a new run's thread, so a retry resumes exactly where it should.

A checkpoint id is only found on its own thread: resuming a new thread "at" an old checkpoint id
silently reruns the whole graph. So a retry copies the checkpoint the target stage started from
into its own thread; `invoke(None, ...)` on that thread then runs the target stage and what
follows, nothing before it.
"""

import logging
from typing import TYPE_CHECKING, Any

from pipeline.checkpointer import get_checkpointer
from pipeline.graphs import PATH_SEPARATOR, compiled_graph

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)

ERROR_CHANNELS = ("__error__", "__interrupt__")


def checkpoint_config(
    thread_id: str, checkpoint_id: str | None = None, namespace: str = ""
) -> dict:
    configurable = {"thread_id": thread_id, "checkpoint_ns": namespace}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def graph_saver(graph: str) -> "BaseCheckpointSaver":
    """The saver as the graph's compilation set it up: with LANGGRAPH_STRICT_MSGPACK, it knows
    the types the graph's schemas name, which the bare saver would read back as plain dicts."""
    return compiled_graph(graph).checkpointer


def read_checkpoint(
    graph: str, thread_id: str, checkpoint_id: str, namespace: str = ""
) -> "CheckpointTuple | None":
    """The checkpoint, or None when it was pruned, deleted or cannot be read."""
    if not checkpoint_id:
        return None
    try:
        return graph_saver(graph).get_tuple(checkpoint_config(thread_id, checkpoint_id, namespace))
    except Exception:
        logger.warning(
            "checkpoint %s of thread %s is unreadable", checkpoint_id, thread_id, exc_info=True
        )
        return None


def fork_checkpoint(
    graph: str,
    source: "CheckpointTuple",
    new_thread_id: str,
    *,
    namespace: str = "",
    patch: dict | None = None,
    rerun_task_id: str = "",
) -> str:
    """Copy `source` into `new_thread_id` (with `patch` set on its channels); return its id.

    Pending writes of sibling tasks that had succeeded are copied too, so a parallel branch that
    finished is not run again. The writes of the task being retried (`rerun_task_id`: task ids
    derive from the checkpoint, so they are the same in the copy) and errors are not. A
    subgraph's checkpoint is copied under its `namespace`, which names the subgraph's task: the
    same in the copy, so the resumed subgraph finds it.
    """
    saver = graph_saver(graph)
    checkpoint = dict(source.checkpoint)
    values = dict(checkpoint["channel_values"])
    versions = dict(checkpoint["channel_versions"])
    for key, value in (patch or {}).items():
        values[key] = value
        versions[key] = saver.get_next_version(versions.get(key), None)
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions
    config = saver.put(
        checkpoint_config(new_thread_id, namespace=namespace), checkpoint, source.metadata, versions
    )
    writes = source.pending_writes or []
    failed = {task_id for task_id, channel, _ in writes if channel in ERROR_CHANNELS}
    kept: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in writes:
        if task_id not in failed and task_id != rerun_task_id:
            kept.setdefault(task_id, []).append((channel, value))
    for task_id, task_writes in kept.items():
        saver.put_writes(config, task_writes, task_id)
    return config["configurable"]["checkpoint_id"]


def delete_thread(thread_id: str) -> None:
    get_checkpointer().delete_thread(thread_id)


def reachable_stages(graph_name: str, start: str) -> list[str]:
    """`start` and every stage that can run after it, in the graph's declaration order. For a
    stage inside a subgraph ("sub > b"), the subgraph's stages from it, then what follows the
    subgraph."""
    return _reachable(compiled_graph(graph_name), start.split(PATH_SEPARATOR))


def _reachable(graph: "CompiledStateGraph", path: list[str]) -> list[str]:
    from langgraph.graph.state import CompiledStateGraph

    start, inner_path = path[0], path[1:]
    stages = _reachable_nodes(graph.get_graph(), start)
    if not inner_path:
        return stages
    spec = graph.builder.nodes.get(start)
    subgraph = spec.runnable if spec else None
    inner = (
        _reachable(subgraph, inner_path)
        if isinstance(subgraph, CompiledStateGraph)
        # A subgraph called from inside a node: its shape is not known before it runs.
        else [PATH_SEPARATOR.join(inner_path)]
    )
    nested = [start + PATH_SEPARATOR + stage for stage in inner]
    return [start, *nested, *stages[1:]]


def _reachable_nodes(drawable, start: str) -> list[str]:
    following: dict[str, set[str]] = {}
    for edge in drawable.edges:
        following.setdefault(edge.source, set()).add(edge.target)
    seen, todo = {start}, [start]
    while todo:
        for nxt in following.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    order = [node for node in drawable.nodes if not node.startswith("__")]
    return [node for node in order if node in seen]
