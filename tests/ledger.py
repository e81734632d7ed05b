"""What the test graphs write themselves: a ledger of node executions, and switches that make
a node fail, shared with worker processes through two files named in the environment.

The console's own rows say what it recorded; the ledger says what really ran, which is what
proves that a retry or a resume ran nothing it did not have to.
"""

import os
from collections import Counter
from pathlib import Path

LEDGER_ENV = "GAMED_TEST_LEDGER"
FAIL_ENV = "GAMED_TEST_FAIL"


class Broken(RuntimeError):
    """Raised by a node whose name is in the fail file (a dependency that is down)."""


def record(config: dict, node: str) -> None:
    """Append one line for this execution of `node` in the run's thread."""
    path = os.environ.get(LEDGER_ENV)
    if path:
        thread = config["configurable"]["thread_id"]
        with open(path, "a") as ledger:
            ledger.write(f"{thread}\t{node}\n")


def fail_if_broken(node: str) -> None:
    path = os.environ.get(FAIL_ENV)
    if path and Path(path).exists() and node in Path(path).read_text().split():
        raise Broken(f"{node} is broken")


def executions(path: Path, *threads: str) -> Counter:
    """How many times each node ran in the given threads (runs' thread ids)."""
    wanted = {str(t) for t in threads}
    counts: Counter = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            thread, node = line.split("\t")
            if thread in wanted:
                counts[node] += 1
    return counts
