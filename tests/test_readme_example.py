"""The JSON API example in README.md works as written, against a live server and a worker."""

import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User

from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.worker


def example_commands() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**The example**") : readme.index("**Endpoints.**")]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.S)
    commands = [block for block in blocks if "curl" in block or "export" in block]
    assert len(commands) >= 3, "the README example lost its commands"
    return "\n".join(commands)


def test_readme_api_example_runs_as_written(workers, live_server):
    # What `make run` leaves behind: the `admin` superuser the example's key belongs to.
    User.objects.create_superuser("admin", password=None)
    workers.start()
    script = example_commands().replace("http://127.0.0.1:8000", live_server.url)
    env = child_env()
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    # The example's stream and `sleep 2` assume a worker that is already up.
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "event: run.ended" in result.stdout
    assert '"resume_mode":"checkpoint"' in result.stdout
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert [line[1:] for line in lines] == [
        ["succeeded", "1", "scene_generator"],
        ["failed", "0", ""],
    ]
