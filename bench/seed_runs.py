"""Seeds a Postgres database with runs and stage rows, for the admin page benchmarks.

It first executes a few dozen real runs in this process: GamED for several questions, some
failing at a stage (some of those retried once or twice, as an operator would), and the 10-, 20-
and 30-stage no-op bench graphs. Every other run is a copy of one of them, or of a whole retry
lineage, with its own ids and checkpoint ids, times spread over the last 30 days, the stage
durations and token counts of a pipeline that calls models, an everyday error instead of the
injected one, a requester; a few copies are cancelled, interrupted, running or pending. GamED
copies are most runs; no-op copies fill up to `runs x stages-per-run` stage rows. The copies
are planned here and sent with COPY; the server makes the run, stage and audit rows with
INSERT ... SELECT, in one transaction.

The database (default `gamed_seed`, `gamed_seed_quick` with --quick) is created and migrated
when missing and reused when it already holds the same seed (a comment on the database says
what it holds); --reset drops it first.

    python bench/seed_runs.py [--runs 100000] [--stages-per-run 10] [--quick] [--reset]
                              [--database-url URL] [--rows]
"""

import argparse
import json
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from _common import POSTGRES_URL, print_rows, row, use_database

RUNS, STAGES_PER_RUN, QUICK_RUNS = 100_000, 10, 10_000
_SERVER = POSTGRES_URL.rsplit("/", 1)[0]
SEED_URL = os.environ.get("BENCH_SEED_POSTGRES_URL", f"{_SERVER}/gamed_seed")
QUICK_SEED_URL = os.environ.get("BENCH_SEED_QUICK_POSTGRES_URL", f"{_SERVER}/gamed_seed_quick")
MARK = "gamed-console bench seed: "

QUESTIONS = [
    "Label the parts of a plant cell",
    "Label the bones of the human skeleton",
    "Label the chambers of the human heart",
    "Put the stages of the water cycle in order",
    "Order the phases of mitosis",
    "Sort these into solids, liquids and gases",
    "Sort these animals into mammals, birds, reptiles and fish",
    "Which planet is the largest?",
    "How do leaves make glucose by photosynthesis?",
]
AUDIENCES = ["", "", "", " for year 7", " for year 9", " (revision)", " as a quick quiz"]
# Stages the real runs fail at, and their questions (the skeleton takes two blueprint drafts,
# so its retries have ten stages).
FAILURES = [
    ("domain_knowledge_retriever", QUESTIONS[0]),
    ("router", QUESTIONS[2]),
    ("game_planner", QUESTIONS[3]),
    ("scene_generator", QUESTIONS[4]),
    ("blueprint_generator", QUESTIONS[1]),
    ("output_renderer", QUESTIONS[1]),
]
# What a failed copy says instead of the injected fault; no quotes or backslashes, so the text
# can be swapped inside the stage logs' JSON as it is.
ERRORS = [
    "TimeoutError: model call timed out after 60 s",
    "RateLimitError: 429 Too Many Requests from the model provider (retry after 20 s)",
    "ValueError: the model returned no valid JSON object",
    "ConnectionError: knowledge service unavailable (503)",
    "KeyError: scene layout has no zone for hotspot-4",
]
EXPECTED = {
    "failed": ["failed"],
    "retried": ["failed", "succeeded"],
    "retried twice": ["failed", "failed", "succeeded"],
    "validator": ["failed", "succeeded"],
}
INTERRUPTED = "worker stopped: TimeoutException: Task exceeded maximum timeout value (3600 seconds)"
# Typical stage durations (ms) of a GamED pipeline that calls models; no-op stages take ~2 ms.
STAGE_MS = {
    "input_enhancer": 900,
    "domain_knowledge_retriever": 1500,
    "router": 700,
    "game_planner": 6000,
    "scene_generator": 9000,
    "blueprint_generator": 12000,
    "blueprint_validator": 400,
    "output_renderer": 300,
}
# Model, prompt and completion tokens of the stages that call one; $ per million tokens.
MODEL_USE = {
    "input_enhancer": ("gpt-4o-mini", 350, 120),
    "router": ("gpt-4o-mini", 900, 60),
    "game_planner": ("gpt-4o", 2400, 700),
    "scene_generator": ("gpt-4o", 3100, 1400),
    "blueprint_generator": ("gpt-4o", 4200, 2100),
}
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}
GAMED_SHARE = 0.8
# Retry lineages and failures per 1,000 GamED lineages; the rest succeed at the first attempt.
KIND_WEIGHTS = {
    "failed": 40,
    "retried": 30,
    "retried twice": 5,
    "validator": 10,
    "cancelled": 10,
    "interrupted": 5,
}


@dataclass
class Template:
    """A real run the seed copies: its row, its lineage parent and its stage timing."""

    id: uuid.UUID
    graph: str
    subject: str
    status: str
    parent: int | None
    stages: list[tuple[int, str, str]]

    @property
    def executed_ms(self) -> list[int | None]:
        """Per stage, its typical duration; None for a stage reused from the parent run."""
        return [
            None if status == "reused" else STAGE_MS.get(name, 2) for _, name, status in self.stages
        ]


@dataclass
class Lineage:
    kind: str
    runs: list[Template]


def log(message: str) -> None:
    print(f"seed: {message}", file=sys.stderr, flush=True)


# The database -----------------------------------------------------------------------------------


def held_seed(conn: psycopg.Connection, name: str) -> dict | None:
    """What the database says it holds: None when it does not exist, {} when it is not a seed."""
    found = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    if found is None:
        return None
    comment = found[0] or ""
    return json.loads(comment.removeprefix(MARK)) if comment.startswith(MARK) else {}


def mark(conn: psycopg.Connection, name: str, seed: dict) -> None:
    text = MARK + json.dumps(seed)
    conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{text}'")


def prepare_database(url: str, wanted: dict, reset: bool) -> dict:
    """Create the database when missing, or drop and create it: with --reset, or when a seed
    did not finish. Returns the seed it holds; refuses a database some other seed or program
    made."""
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        held = held_seed(conn, name)
        if held is not None and (reset or held.get("state") == "seeding"):
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            held = None
        if held is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            held = {"state": "seeding"}
            mark(conn, name, held)
        elif not held:
            raise SystemExit(f"{name} was not made by seed_runs.py; --reset drops and seeds it")
        elif {key: held.get(key) for key in wanted} != wanted:
            raise SystemExit(f"{name} holds another seed ({held}); --reset drops and seeds it")
    return held


def ensure_seeded(
    url: str, *, runs: int, stages_per_run: int = STAGES_PER_RUN, reset: bool = False
) -> dict:
    """Point Django at a database holding the seed, seeding it first unless it already does.
    Returns the seed: runs, stages_per_run, stage_rows, seconds it took, reused."""
    wanted = {"runs": runs, "stages_per_run": stages_per_run}
    held = prepare_database(url, wanted, reset)
    use_database(url)
    if held.get("state") != "seeding":
        log(
            f"reusing {url.rsplit('/', 1)[1]}: {held['runs']:,} runs, {held['stage_rows']:,} stages"
        )
        return {**held, "reused": True}
    started = time.monotonic()
    stage_rows = seed(url, runs, stages_per_run)
    seconds = round(time.monotonic() - started, 1)
    done = {**wanted, "stage_rows": stage_rows, "seconds": seconds, "state": "seeded"}
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        mark(conn, name, done)
    log(f"done: {runs:,} runs and {stage_rows:,} stage rows in {seconds:.0f} s")
    return {**done, "reused": False}


# Real runs --------------------------------------------------------------------------------------


def execute_templates() -> list[Lineage]:
    """Real runs of every kind the seed copies, executed inline through the services."""
    from django_q.conf import Conf

    from pipeline import services
    from pipeline.models import PipelineRun, Surface

    Conf.SYNC = True
    # The stage logs are kept (the copies carry them), only not printed.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)

    def start(graph: str, **data) -> PipelineRun:
        run = services.start_run(graph=graph, input=data, actor=services.Actor(via=Surface.API))
        run.refresh_from_db()
        return run

    def retry(run: PipelineRun, stage: str, reason: str, **patch) -> PipelineRun:
        new = services.retry_run(
            run=run,
            from_stage=stage,
            state_patch=patch or None,
            actor=services.Actor(via=Surface.ADMIN),
            reason=reason,
        )
        new.refresh_from_db()
        return new

    lineages: list[tuple[str, list[PipelineRun]]] = []
    for question in QUESTIONS:
        lineages.append(("succeeded", [start("gamed", question=question)]))
    for stage, question in FAILURES:
        failed = start("gamed", question=question, faults={stage: "fail_once"})
        lineages.append(("failed", [failed]))
        lineages.append(("retried", [failed, retry(failed, stage, "transient error")]))
    failed = start("gamed", question=QUESTIONS[2], faults={"game_planner": "fail_always"})
    again = retry(failed, "game_planner", "transient error")
    fixed = retry(again, "game_planner", "fails every time: retry with a patched state", faults={})
    lineages.append(("retried twice", [failed, again, fixed]))
    rejected = start("gamed", question=QUESTIONS[1], max_blueprint_attempts=1)
    allowed = retry(
        rejected, "blueprint_generator", "allow a second draft", max_blueprint_attempts=3
    )
    lineages.append(("validator", [rejected, allowed]))
    for graph in ("bench_noop10", "bench_noop20", "bench_noop30"):
        lineages.append((graph, [start(graph, n=0)]))

    result = []
    for kind, runs in lineages:
        statuses = [run.status for run in runs]
        if statuses != EXPECTED.get(kind, ["succeeded"]):
            raise SystemExit(f"real {kind} runs ended {statuses}, not {EXPECTED.get(kind)}")
        ids = [run.pk for run in runs]
        templates = []
        for run in runs:
            stages = list(
                run.stages.order_by("stage_order").values_list(
                    "stage_order", "stage_name", "status"
                )
            )
            parent = ids.index(run.parent_run_id) if run.parent_run_id else None
            templates.append(Template(run.pk, run.graph, run.subject, run.status, parent, stages))
        result.append(Lineage(kind, templates))
    return result


# The plan ---------------------------------------------------------------------------------------

PLAN_COLUMNS = (
    "id uuid, template_id uuid, parent_id uuid, root_id uuid, depth int, status text, "
    "keep int, last_stage_status text, error text, subject text, requested_via text, "
    "requested_by_id int, worker text, created_at timestamptz, queued_at timestamptz, "
    "started_at timestamptz, finished_at timestamptz, heartbeat_at timestamptz, "
    "lease_expires_at timestamptz, speed float8"
)


def make_plan(
    lineages: list[Lineage], copies: int, stage_rows: int, operators: list[int], rng: random.Random
) -> list[tuple]:
    """`copies` plan rows (one per copied run) whose stages add up to about `stage_rows`."""
    by_kind: dict[str, list[Lineage]] = {}
    for lineage in lineages:
        by_kind.setdefault(lineage.kind, []).append(lineage)
    succeeded = by_kind["succeeded"]
    now = datetime.now(UTC)
    month = timedelta(days=30).total_seconds()
    plan: list[tuple] = []

    def add(lineage: Lineage, kind: str, created: datetime, keep: int | None = None) -> int:
        """Copies of the lineage's runs from `created` on; returns the stage rows they make."""
        ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in lineage.runs]
        root = lineage.runs[0]
        subject = root.subject + rng.choice(AUDIENCES) if root.subject else ""
        error = rng.choice(ERRORS) if kind in ("failed", "retried", "retried twice") else None
        made = 0
        for i, template in enumerate(lineage.runs):
            speed = rng.lognormvariate(0, 0.35)
            via = rng.choice(["api", "api", "cli", "admin", "system"]) if i == 0 else "admin"
            user = rng.choice(operators) if via == "admin" else None
            queued = created + timedelta(milliseconds=5)
            started = queued + timedelta(seconds=rng.expovariate(1 / 0.8))
            durations = template.executed_ms
            count = len(durations) if keep is None else keep
            spent = sum(ms or 0 for ms in durations[:count]) * speed
            finished = started + timedelta(milliseconds=spent + 40)
            status, last_status, lease = template.status, None, None
            run_error = error if status == "failed" else None
            if kind == "cancelled":
                status, last_status, run_error = (
                    "cancelled",
                    "cancelled",
                    "Cancelled by an operator.",
                )
            elif kind == "interrupted":
                status, last_status, run_error = "interrupted", "interrupted", INTERRUPTED
            elif kind == "running":
                status, last_status, finished = "running", "running", None
                lease = now + timedelta(seconds=55)
            elif kind == "pending":
                status, started, finished = "pending", None, None
            plan.append(
                (
                    ids[i],
                    template.id,
                    ids[template.parent] if template.parent is not None else None,
                    ids[0] if i else None,
                    i,
                    status,
                    keep,
                    last_status,
                    run_error,
                    subject,
                    via,
                    user,
                    f"worker-{rng.randint(1, 4)}:{rng.randint(1000, 60000)}" if started else "",
                    created,
                    queued,
                    started,
                    finished,
                    now - timedelta(seconds=2) if kind == "running" else finished,
                    lease,
                    speed,
                )
            )
            made += count
            if finished is not None and i + 1 < len(lineage.runs):
                created = finished + timedelta(seconds=rng.uniform(60, 3 * 3600))
                created = min(created, now - timedelta(seconds=rng.uniform(1, 60)))
        return made

    made = 0
    # The newest runs: some still pending or running.
    for kind, keep in [("pending", 0), ("pending", 0), ("running", 3), ("running", 6)]:
        created = now - timedelta(seconds=rng.uniform(1, 20))
        made += add(rng.choice(succeeded), kind, created, keep)
    kinds = ["succeeded", *KIND_WEIGHTS]
    weights = [1000 - sum(KIND_WEIGHTS.values()), *KIND_WEIGHTS.values()]
    gamed_runs = int(copies * GAMED_SHARE)
    while len(plan) < gamed_runs:
        kind = rng.choices(kinds, weights)[0]
        created = now - timedelta(seconds=rng.uniform(60, month))
        if kind in ("cancelled", "interrupted"):
            lineage = rng.choice(succeeded)
            made += add(lineage, kind, created, rng.randint(1, len(lineage.runs[0].stages) - 1))
        else:
            made += add(rng.choice(by_kind[kind]), kind, created)
    # No-op copies (10 or 20 stages) bring the stage rows to the target.
    left = copies - len(plan)
    twenty = min(max(round((stage_rows - made - 10 * left) / 10), 0), left)
    for graph, count in (("bench_noop20", twenty), ("bench_noop10", left - twenty)):
        for _ in range(count):
            add(by_kind[graph][0], "succeeded", now - timedelta(seconds=rng.uniform(60, month)))
    return plan


# The seed ---------------------------------------------------------------------------------------

INSERT_RUNS = """
INSERT INTO pipeline_pipelinerun (
    id, graph, status, subject, input, output, error_message, error_traceback, thread_id,
    parent_run_id, root_run_id, retry_from_stage, retry_depth, resume_mode, resume_note, reason,
    requested_by_id, requested_via, created_at, queued_at, started_at, finished_at,
    heartbeat_at, worker, lease_expires_at, checkpoints_pruned_at, cancel_requested, attempts,
    auto_resumes, context, replay_answers)
SELECT
    p.id, t.graph, p.status, p.subject,
    CASE WHEN t.graph = 'gamed'
        THEN t.input || jsonb_build_object('question', p.subject, 'faults', '{}'::jsonb)
        ELSE t.input END,
    CASE WHEN p.status = 'succeeded' THEN t.output END,
    COALESCE(p.error, t.error_message),
    CASE WHEN p.status <> t.status THEN ''
        WHEN p.error IS NULL THEN t.error_traceback
        ELSE replace(t.error_traceback, t.error_message, p.error) END,
    p.id::text, p.parent_id, p.root_id, t.retry_from_stage, t.retry_depth, t.resume_mode,
    t.resume_note, t.reason, p.requested_by_id, p.requested_via, p.created_at, p.queued_at,
    p.started_at, p.finished_at, p.heartbeat_at, p.worker, p.lease_expires_at, NULL,
    p.status = 'cancelled', CASE WHEN p.started_at IS NULL THEN 0 ELSE 1 END, 0, t.context,
    t.replay_answers
FROM seed_plan p JOIN pipeline_pipelinerun t ON t.id = p.template_id
"""

# Each copied stage takes its typical time x the run's speed x 0.7-1.0, so stages never overlap.
INSERT_STAGES = """
INSERT INTO pipeline_stageexecution (
    run_id, stage_name, stage_order, namespace, status, task_id, attempt, tries, retry_errors,
    started_at, finished_at, duration_ms, input_snapshot, output_snapshot, error_message,
    error_traceback, logs, checkpoint_id, parent_checkpoint_id, reused_from_id, model_id,
    model_calls, prompt_tokens, completion_tokens, total_tokens, cost_usd)
SELECT
    run_id, stage_name, stage_order, namespace, status,
    md5(run_id::text || ':' || stage_order)::uuid::text, attempt, tries, retry_errors, started_at,
    CASE WHEN status <> 'running' THEN started_at + ms * interval '1 ms' END,
    CASE WHEN started_at IS NULL THEN template_ms WHEN status <> 'running' THEN ms END,
    input_snapshot, output_snapshot, error_message, error_traceback, logs,
    CASE WHEN status <> 'running' THEN md5(run_id::text || '/' || stage_order)::uuid::text
        ELSE '' END,
    md5(run_id::text || '/' || (stage_order - 1))::uuid::text,
    NULL, model_id, CASE WHEN model_id = '' THEN 0 ELSE 1 END, prompt_tokens,
    completion_tokens, prompt_tokens + completion_tokens, cost_usd
FROM (
    SELECT
        p.id AS run_id, s.stage_name, s.stage_order, s.namespace,
        CASE WHEN s.stage_order = p.keep THEN p.last_stage_status ELSE s.status END AS status,
        s.attempt, s.tries, s.retry_errors, s.duration_ms AS template_ms,
        p.started_at + tm.offset_ms * p.speed * interval '1 ms' AS started_at,
        round(tm.duration_ms * p.speed * (0.7 + 0.3 * random()))::int AS ms,
        CASE WHEN t.input->'faults' <> '{}' AND s.input_snapshot ? 'faults'
            THEN s.input_snapshot || '{"faults": {}}' ELSE s.input_snapshot END AS input_snapshot,
        s.output_snapshot,
        CASE WHEN s.stage_order = p.keep THEN COALESCE(p.error, '')
            WHEN p.error IS NULL THEN s.error_message
            ELSE replace(s.error_message, t.error_message, p.error) END AS error_message,
        CASE WHEN s.stage_order = p.keep OR p.error IS NULL THEN s.error_traceback
            ELSE replace(s.error_traceback, t.error_message, p.error) END AS error_traceback,
        CASE WHEN p.error IS NULL OR t.error_message = '' THEN s.logs
            ELSE replace(s.logs::text, t.error_message, p.error)::jsonb END AS logs,
        tm.model_id, tm.prompt_tokens, tm.completion_tokens, tm.cost_usd
    FROM seed_plan p
    JOIN pipeline_pipelinerun t ON t.id = p.template_id
    JOIN pipeline_stageexecution s
        ON s.run_id = p.template_id AND s.stage_order <= COALESCE(p.keep, s.stage_order)
    JOIN seed_timing tm ON tm.run_id = s.run_id AND tm.stage_order = s.stage_order
) AS copied
"""

# A reused stage points at the row that really ran it, in the copied parent (depth by depth).
LINK_REUSED = """
UPDATE pipeline_stageexecution r
SET reused_from_id = COALESCE(o.reused_from_id, o.id), task_id = o.task_id,
    checkpoint_id = o.checkpoint_id, parent_checkpoint_id = o.parent_checkpoint_id
FROM seed_plan p, pipeline_stageexecution o
WHERE p.depth = %s AND r.run_id = p.id AND r.status = 'reused'
    AND o.run_id = p.parent_id AND o.stage_order = r.stage_order
"""

INSERT_AUDIT = """
INSERT INTO pipeline_auditrecord (
    at, actor_id, actor_label, via, action, run_id, result_run_id, reason, details)
SELECT p.created_at, p.requested_by_id, a.actor_label, p.requested_via, a.action,
    CASE WHEN a.run_id = a.result_run_id THEN p.id ELSE p.parent_id END, p.id, a.reason,
    a.details
FROM seed_plan p JOIN pipeline_auditrecord a ON a.result_run_id = p.template_id
"""


def timing_rows(lineages: list[Lineage]) -> list[tuple]:
    """Per template stage: start offset and duration (typical, in ms), model use."""
    rows = []
    # A failed run is the root of several lineages: its stages are listed once.
    templates = {template.id: template for lineage in lineages for template in lineage.runs}
    for template in templates.values():
        offset = 0
        for (order, name, _), ms in zip(template.stages, template.executed_ms, strict=True):
            model, prompt, completion = MODEL_USE.get(name, (None, None, None))
            cost = None
            if model:
                price_in, price_out = PRICES[model]
                cost = round((prompt * price_in + completion * price_out) / 1e6, 6)
            rows.append(
                (
                    template.id,
                    order,
                    None if ms is None else offset,
                    ms,
                    model or "",
                    prompt,
                    completion,
                    cost,
                )
            )
            offset += ms or 0
    return rows


def seed(url: str, runs: int, stages_per_run: int) -> int:
    """Seed the database Django points at; returns the stage rows it then holds."""
    from django.contrib.auth import get_user_model

    rng = random.Random(5)
    log("executing the real runs the seed copies")
    lineages = execute_templates()
    templates = {template.id: template for lineage in lineages for template in lineage.runs}
    operators = [
        get_user_model().objects.create_user(f"operator{i}", is_staff=True).pk for i in range(1, 4)
    ]
    real_rows = sum(len(template.stages) for template in templates.values())
    copies = max(runs - len(templates), 0)
    plan = make_plan(lineages, copies, runs * stages_per_run - real_rows, operators, rng)
    log(f"{len(templates)} real runs; copying them into {len(plan):,} more")
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TEMP TABLE seed_plan ({PLAN_COLUMNS})")
        conn.execute(
            "CREATE TEMP TABLE seed_timing (run_id uuid, stage_order int, offset_ms int, "
            "duration_ms int, model_id text, prompt_tokens int, completion_tokens int, "
            "cost_usd numeric)"
        )
        with conn.cursor().copy("COPY seed_plan FROM STDIN") as copy:
            for item in plan:
                copy.write_row(item)
        with conn.cursor().copy("COPY seed_timing FROM STDIN") as copy:
            for item in timing_rows(lineages):
                copy.write_row(item)
        conn.execute("ANALYZE seed_plan")
        for label, sql in [("runs", INSERT_RUNS), ("stage rows", INSERT_STAGES)]:
            started = time.monotonic()
            done = conn.execute(sql).rowcount
            log(f"{done:,} {label} in {time.monotonic() - started:.1f} s")
        for depth in (1, 2):
            conn.execute(LINK_REUSED, (depth,))
        conn.execute(INSERT_AUDIT)
        stage_rows = conn.execute("SELECT count(*) FROM pipeline_stageexecution").fetchone()[0]
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    log(f"vacuum analyze in {time.monotonic() - started:.1f} s")
    return stage_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help=f"default {RUNS:,}; {QUICK_RUNS:,} with --quick")
    parser.add_argument("--stages-per-run", type=int, default=STAGES_PER_RUN)
    parser.add_argument("--quick", action="store_true", help="a small seed, its own database")
    parser.add_argument("--reset", action="store_true", help="drop the database and seed again")
    parser.add_argument("--database-url", help=f"default {SEED_URL} ({QUICK_SEED_URL} if quick)")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    url = args.database_url or (QUICK_SEED_URL if args.quick else SEED_URL)
    result = ensure_seeded(url, runs=runs, stages_per_run=args.stages_per_run, reset=args.reset)
    name = f"seed {result['runs']:,} runs + {result['stage_rows']:,} stages, s (postgres)"
    if args.rows:
        print_rows([row(name, result["seconds"])])
    else:
        how = "reused, seeded earlier in" if result["reused"] else "seeded in"
        print(
            f"{url.rsplit('/', 1)[1]}: {name.removesuffix(', s (postgres)')}, {how} "
            f"{result['seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()
