"""`make bench`: runs every benchmark in bench/ and prints one table.

Each script runs in its own process with `--rows` (and `--quick` when it offers one), which
makes it print its figures as JSON lines, one per table row (`_common.row`): the console's
figure, the reference measured in the same run (raw LangGraph unless the metric says
otherwise), their ratio and the target. A script without a `--rows` mode runs plainly and its
output is shown below the table. Files starting with "_" and this one are not benchmarks.

    python bench/run_all.py [--only stage_overhead,throughput]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
COLUMNS = ("metric", "console", "reference", "ratio", "target", "met")


def scripts(only: list[str] | None = None) -> list[Path]:
    found = sorted(
        path
        for path in BENCH.glob("*.py")
        if not path.name.startswith("_") and path.name != Path(__file__).name
    )
    if only:
        found = [path for path in found if path.stem in only]
    return found


def flags_for(script: Path) -> list[str] | None:
    """`--rows` (plus `--quick` if offered), or None when the script has no rows mode."""
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    if "--rows" not in help_text:
        return None
    return ["--rows", *(["--quick"] if "--quick" in help_text else [])]


def parse_rows(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and "metric" in item:
            rows.append(item)
    return rows


def cell(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int | float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict]) -> None:
    cells = [[cell(row.get(column)) for column in COLUMNS] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(COLUMNS)
    ]
    header = [
        column.ljust(widths[0]) if i == 0 else column.rjust(widths[i])
        for i, column in enumerate(COLUMNS)
    ]
    print("  ".join(header))
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print(
            "  ".join(
                value.ljust(widths[0]) if i == 0 else value.rjust(widths[i])
                for i, value in enumerate(line)
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated script names, e.g. stage_overhead")
    args = parser.parse_args()
    only = (
        [name.strip().removesuffix(".py") for name in args.only.split(",")] if args.only else None
    )

    rows: list[dict] = []
    plain: list[tuple[str, str]] = []
    failed: list[str] = []
    for script in scripts(only):
        flags = flags_for(script)
        print(f"bench: {script.name} {' '.join(flags or [])}".rstrip(), file=sys.stderr, flush=True)
        started = time.monotonic()
        # stderr is not captured: a script's warnings and failures show as they happen.
        out = subprocess.run(
            [sys.executable, str(script), *(flags or [])],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        took = time.monotonic() - started
        status = "done" if out.returncode == 0 else f"FAILED (exit {out.returncode})"
        print(f"bench: {script.name} {status} in {took:.0f} s", file=sys.stderr, flush=True)
        if out.returncode != 0:
            failed.append(script.name)
        if flags is None:
            plain.append((script.name, out.stdout))
        else:
            rows.extend(parse_rows(out.stdout))

    print()
    print_table(rows)
    checked = [row["met"] for row in rows if row.get("met") is not None]
    print(f"\ntargets met: {sum(checked)} of {len(checked)}")
    for name, output in plain:
        print(f"\n{name} (no --rows mode; its own output):\n{output.rstrip()}")
    if failed:
        print(f"\nfailed: {', '.join(failed)} (see the errors above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
