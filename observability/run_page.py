"""What the run page draws: the stage timeline, the graph, what each stage changed.

Pure presentation: inputs are rows the selectors returned and LangGraph's own description of a
graph; nothing here queries the database or decides anything about a run.
"""

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from pipeline.lib import format_ms
from pipeline.models import PipelineRun, StageExecution, StageStatus


def stage_ms(stage: StageExecution, now: datetime) -> float | None:
    """How long the stage took, or has been running so far."""
    if stage.duration_ms is not None:
        return stage.duration_ms
    if stage.started_at and stage.status in (StageStatus.RUNNING, StageStatus.WAITING):
        return (now - stage.started_at).total_seconds() * 1000
    return None


# Timeline -------------------------------------------------------------------------------------


@dataclass
class TimelineBar:
    stage: StageExecution
    left: float
    width: float
    duration: str
    offset: str


@dataclass
class Timeline:
    bars: list[TimelineBar]
    ticks: list[tuple[float, str]]
    span: str


def build_timeline(run: PipelineRun, stages: list[StageExecution], now: datetime) -> Timeline:
    """One bar per stage execution on the run's time axis, positioned in percent of it.

    Reused stages took no time in this run: they sit at the start of the axis, drawn apart.
    """
    executed = [s for s in stages if s.started_at and s.status != StageStatus.REUSED]
    starts = [s.started_at for s in executed] + ([run.started_at] if run.started_at else [])
    if not starts:
        bars = [TimelineBar(s, 0.0, 0.0, "reused", "") for s in stages]
        return Timeline(bars=bars, ticks=[], span="")
    origin = min(starts)
    ends = [s.finished_at or now for s in executed]
    if run.finished_at:
        ends.append(run.finished_at)
    elif not run.is_terminal:
        ends.append(now)
    span_ms = max((max(ends) - origin).total_seconds() * 1000, 1.0)

    def percent(moment: datetime) -> float:
        return min(max((moment - origin).total_seconds() * 1000 / span_ms * 100, 0.0), 100.0)

    bars = []
    for stage in stages:
        if stage not in executed:
            bars.append(TimelineBar(stage, 0.0, 0.0, "reused", ""))
            continue
        left = percent(stage.started_at)
        right = percent(stage.finished_at or now)
        offset_ms = (stage.started_at - origin).total_seconds() * 1000
        bars.append(
            TimelineBar(
                stage,
                left=round(left, 3),
                width=round(max(right - left, 0.0), 3),
                duration=format_ms(stage_ms(stage, now)),
                offset=format_ms(offset_ms),
            )
        )
    ticks = [(p, format_ms(span_ms * p / 100)) for p in (0.0, 25.0, 50.0, 75.0, 100.0)]
    return Timeline(bars=bars, ticks=ticks, span=format_ms(span_ms))


# Graph ----------------------------------------------------------------------------------------

NODE_HEIGHT = 28
LAYER_GAP = 26
NODE_GAP = 18
MARGIN = 16
BACK_EDGE_ROOM = 70
CHAR_WIDTH = 7.2


@dataclass
class GraphNode:
    name: str
    label: str
    kind: str
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    layer: int = 0
    status: str = ""
    executions: int = 0
    stage_pk: int | None = None

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def text_y(self) -> float:
        return self.y + NODE_HEIGHT / 2 + 4


@dataclass
class GraphEdge:
    source: str
    target: str
    path: str
    conditional: bool
    back: bool


@dataclass
class GraphDrawing:
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: float
    height: float
    node_height: int = NODE_HEIGHT


@dataclass
class _Layout:
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: list[GraphEdge] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def _back_edges(names: list[str], edges: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Edges that close a cycle (a validator sending work back), found by depth-first search."""
    from langgraph.graph import START

    following: dict[str, list[str]] = {name: [] for name in names}
    for source, target in edges:
        following[source].append(target)
    back, state = set(), {}
    for first in sorted(names, key=lambda n: (n != START, names.index(n))):
        if first in state:
            continue
        state[first] = "open"
        stack = [(first, iter(following[first]))]
        while stack:
            node, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                state[node] = "done"
                stack.pop()
            elif state.get(target) == "open":
                back.add((node, target))
            elif target not in state:
                state[target] = "open"
                stack.append((target, iter(following[target])))
    return back


def layout_graph(description: Any) -> _Layout:
    """A layered top-down drawing of a LangGraph `Graph` (from `get_graph()`)."""
    from langgraph.graph import END, START

    names = list(description.nodes)
    pairs = [(e.source, e.target) for e in description.edges]
    back = _back_edges(names, pairs)
    forward = [pair for pair in pairs if pair not in back]
    layout = _Layout()
    for name in names:
        kind = "start" if name == START else "end" if name == END else "stage"
        label = {"start": "start", "end": "end"}.get(kind, name)
        layout.nodes[name] = GraphNode(
            name=name, label=label, kind=kind, width=max(len(label) * CHAR_WIDTH + 24, 56)
        )
    # Longest path from the start gives each node its layer.
    changed = True
    while changed:
        changed = False
        for source, target in forward:
            wanted = layout.nodes[source].layer + 1
            if layout.nodes[target].layer < wanted:
                layout.nodes[target].layer = wanted
                changed = True
    layers: dict[int, list[GraphNode]] = {}
    for node in layout.nodes.values():
        layers.setdefault(node.layer, []).append(node)
    widest = max(sum(n.width for n in row) + NODE_GAP * (len(row) - 1) for row in layers.values())
    layout.width = widest + 2 * MARGIN + (BACK_EDGE_ROOM if back else 0)
    for index in sorted(layers):
        row = layers[index]
        row_width = sum(n.width for n in row) + NODE_GAP * (len(row) - 1)
        x = MARGIN + (widest - row_width) / 2
        for node in row:
            node.x, node.y = x, MARGIN + index * (NODE_HEIGHT + LAYER_GAP)
            x += node.width + NODE_GAP
    layout.height = MARGIN * 2 + len(layers) * (NODE_HEIGHT + LAYER_GAP) - LAYER_GAP
    loops = 0
    for edge in description.edges:
        source, target = layout.nodes[edge.source], layout.nodes[edge.target]
        is_back = (edge.source, edge.target) in back
        if is_back:
            loops += 1
            bulge = max(source.x + source.width, target.x + target.width) + 30 * loops
            sy, ty = source.y + NODE_HEIGHT / 2, target.y + NODE_HEIGHT / 2
            sx, tx = source.x + source.width, target.x + target.width + 6
            path = (
                f"M{sx:.1f},{sy:.1f} C{bulge:.1f},{sy:.1f} {bulge:.1f},{ty:.1f} {tx:.1f},{ty:.1f}"
            )
        else:
            sx, sy = source.cx, source.y + NODE_HEIGHT
            tx, ty = target.cx, target.y - 6
            if target.layer - source.layer > 1:
                side = max(source.x + source.width, target.x + target.width) + 24
                path = (
                    f"M{sx:.1f},{sy:.1f} C{side:.1f},{sy:.1f} {side:.1f},{ty:.1f} {tx:.1f},{ty:.1f}"
                )
            else:
                path = f"M{sx:.1f},{sy:.1f} L{tx:.1f},{ty:.1f}"
        layout.edges.append(
            GraphEdge(edge.source, edge.target, path, bool(edge.conditional), is_back)
        )
    return layout


def draw_graph(layout: _Layout, stages: list[StageExecution]) -> GraphDrawing:
    """The layout with each node coloured by the status of its latest execution in the run."""
    latest: dict[str, StageExecution] = {}
    counts: dict[str, int] = {}
    for stage in stages:
        latest[stage.stage_name] = stage
        counts[stage.stage_name] = counts.get(stage.stage_name, 0) + 1
    nodes = [
        replace(
            node,
            status=latest[node.name].status if node.name in latest else "",
            executions=counts.get(node.name, 0),
            stage_pk=latest[node.name].pk if node.name in latest else None,
        )
        for node in layout.nodes.values()
    ]
    return GraphDrawing(nodes=nodes, edges=layout.edges, width=layout.width, height=layout.height)


# Stage details --------------------------------------------------------------------------------


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _is_truncated(snapshot: Any) -> bool:
    return isinstance(snapshot, dict) and snapshot.get("_truncated") is True


@dataclass
class StateChange:
    key: str
    before: str
    update: str
    changed: bool


def stage_changes(stage: StageExecution) -> list[StateChange]:
    """Each state key the stage's update wrote, with its value in the state the stage read."""
    update, before = stage.output_snapshot, stage.input_snapshot
    if not isinstance(update, dict) or _is_truncated(update):
        return []
    if not isinstance(before, dict) or _is_truncated(before):
        before = {}
    return [
        StateChange(
            key=key,
            before=pretty_json(before[key]) if key in before else "(not set)",
            update=pretty_json(value),
            changed=key not in before or before[key] != value,
        )
        for key, value in update.items()
    ]


@dataclass
class LogPreview:
    total: int
    shown: list[dict]

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)


def stage_log_preview(stage: StageExecution, first: int = 100) -> LogPreview | None:
    """The stage's first `first` log records and every warning or error after them."""
    records = stage.logs
    if not isinstance(records, list) or not records:
        return None
    shown = [
        {**record, "when": _clock(record.get("time"))}
        for index, record in enumerate(records)
        if index < first or record.get("level", 0) >= logging.WARNING
    ]
    return LogPreview(total=len(records), shown=shown)


def _clock(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return ""
    moment = timezone.localtime(datetime.fromtimestamp(epoch, tz=UTC))
    return moment.strftime("%H:%M:%S.%f")[:12]


def run_log(stages: list[StageExecution]) -> list[dict]:
    """Every log record of every stage of the run, in time order, each with its stage. A
    reused stage shows what it logged in the run it really ran in."""
    records = [
        {
            **record,
            "stage": stage,
            "reused": source is not stage,
            "when": _clock(record.get("time")),
            "level": record.get("level", logging.INFO),
            "level_name": record.get("level_name", "INFO"),
            "sort": (record.get("time") or 0, stage.stage_order, seq),
        }
        for stage in stages
        for source in [_logged_by(stage)]
        for seq, record in enumerate(source.logs if isinstance(source.logs, list) else [])
    ]
    return sorted(records, key=lambda record: record["sort"])


def _logged_by(stage: StageExecution) -> StageExecution:
    if stage.status == StageStatus.REUSED and stage.reused_from_id:
        return stage.reused_from
    return stage


@dataclass
class StateDifference:
    key: str
    change: str  # "added", "removed" or "changed"
    before: str
    after: str


def state_difference(before: dict, after: dict) -> list[StateDifference]:
    """The state keys whose values differ between two states, in key order."""
    keys = sorted(set(before) | set(after))
    return [
        StateDifference(
            key=key,
            change="added" if key not in before else "removed" if key not in after else "changed",
            before=pretty_json(before[key]) if key in before else "(not set)",
            after=pretty_json(after[key]) if key in after else "(not set)",
        )
        for key in keys
        if before.get(key, _UNSET) != after.get(key, _UNSET)
    ]


_UNSET = object()
