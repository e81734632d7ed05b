"""How long `manage.py runs` and `manage.py show_run` take, against the same commands before
they stopped importing LangGraph.

Commands that only read runs used to import LangGraph and LangChain (and build every graph in
the system checks) before printing anything. The reference is not a synthetic stand-in: it is
the same command from the code as it was before that change (commit BASELINE, checked out with
`git worktree add --detach` into a temporary directory), run in the same measurement, with the
same interpreter and installed packages, against the same freshly migrated SQLite database
holding the same runs. Each sample is one whole process (interpreter start to exit), timed from
outside; baseline and console samples alternate so machine load affects both alike. The figure
is the median. Target: the console's commands start at least 3x faster.

    python bench/cli_startup.py [--samples 7] [--runs 200] [--baseline REF] [--rows]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_rows, row

# main just before read-only commands stopped importing LangGraph.
BASELINE = "645f9ea"
TARGET = 3.0
COMMANDS = ("runs", "show_run")


def seed(env: dict, runs: int) -> str:
    """Migrate the database and write `runs` finished runs with stages; return one run's id."""
    script = f"""
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import uuid
from pipeline.models import PipelineRun, StageExecution
ids = [uuid.uuid4() for _ in range({runs})]
made = [
    PipelineRun(id=i, thread_id=str(i), graph="gamed", status="failed", subject="a run")
    for i in ids
]
PipelineRun.objects.bulk_create(made)
StageExecution.objects.bulk_create(
    StageExecution(run=run, stage_name=f"stage_{{n}}", stage_order=n, status="succeeded")
    for run in made for n in range(1, 9)
)
print(made[0].pk)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"seeding failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def timed(checkout: Path, args: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=checkout, env=env, capture_output=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{checkout}: manage.py {' '.join(args)} failed:\n{done.stderr.decode()[-2000:]}")
    return elapsed


def measure(samples: int, runs: int, baseline: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="gamed-cli-bench-") as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(old), baseline],
            cwd=ROOT,
            check=True,
        )
        try:
            env = {
                k: v
                for k, v in os.environ.items()
                if k not in {"DATABASE_URL", "CHECKPOINT_DATABASE_URL", "REDIS_URL"}
            }
            env.update(
                DJANGO_SETTINGS_MODULE="gamed_console.settings",
                GAMED_VAR_DIR=tmp,
                DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
            )
            run_id = seed(env, runs)
            # Each checkout imports its own code: the script's directory comes first on sys.path.
            found = subprocess.run(
                [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
                cwd=old,
                capture_output=True,
                text=True,
            ).stdout
            assert found.startswith(str(old)), found
            results = []
            for command in COMMANDS:
                args = [command] if command == "runs" else [command, run_id]
                timed(old, args, env), timed(ROOT, args, env)  # warm the file cache
                before, now = [], []
                for _ in range(samples):
                    before.append(timed(old, args, env))
                    now.append(timed(ROOT, args, env))
                results.append(
                    {
                        "command": command,
                        "console_s": statistics.median(now),
                        "baseline_s": statistics.median(before),
                    }
                )
            return results
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)


def rows(results: list[dict], baseline: str) -> list[dict]:
    out = []
    for result in results:
        ratio = result["baseline_s"] / result["console_s"]
        out.append(
            row(
                f"manage.py {result['command']} wall time (s; reference: the same command "
                f"at {baseline})",
                round(result["console_s"], 3),
                round(result["baseline_s"], 3),
                round(ratio, 2),
                f">= {TARGET:g}x faster",
                ratio >= TARGET,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7, help="timed runs per command")
    parser.add_argument("--runs", type=int, default=200, help="runs in the database")
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the reference code")
    parser.add_argument("--quick", action="store_true", help="3 samples per command")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", action="store_true", help="print table rows (for make bench)")
    args = parser.parse_args()
    results = measure(3 if args.quick else args.samples, args.runs, args.baseline)
    if args.rows:
        print_rows(rows(results, args.baseline))
    elif args.json:
        print(json.dumps(results))
    else:
        for result in results:
            print(
                f"manage.py {result['command']:<9} {result['console_s']:.3f} s  "
                f"(at {args.baseline}: {result['baseline_s']:.3f} s, "
                f"{result['baseline_s'] / result['console_s']:.1f}x faster now)"
            )


if __name__ == "__main__":
    main()
