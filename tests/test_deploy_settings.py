"""The production settings docs/settings.md gives pass `manage.py check --deploy`, all from the
environment."""

import re
import subprocess

from django.core.management.utils import get_random_secret_key

from tests.conftest import ROOT


def production_exports() -> str:
    settings_doc = (ROOT / "docs/settings.md").read_text()
    section = settings_doc[settings_doc.index("Production: Postgres") :]
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    exports = [line for line in block.splitlines() if line.startswith("export ")]
    assert any("SECURE_HSTS_SECONDS" in line for line in exports), "the example lost HTTPS"
    return "\n".join(exports)


def test_the_documented_production_example_passes_the_deploy_checks(tmp_path):
    secret = get_random_secret_key()
    script = production_exports().replace("SECRET_KEY=...", f"SECRET_KEY='{secret}'")
    result = subprocess.run(
        ["bash", "-euc", f"{script}\nexec python manage.py check --deploy --fail-level WARNING"],
        cwd=ROOT,
        env={"PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin", "GAMED_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_the_https_settings_the_deploy_checks_complain(tmp_path):
    result = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={"GAMED_VAR_DIR": str(tmp_path), "SECRET_KEY": get_random_secret_key()},
        capture_output=True,
        text=True,
        timeout=120,
    )

    for warning in ("W004", "W008", "W012", "W016"):  # HSTS, redirect, session, CSRF cookies
        assert f"security.{warning}" in result.stdout + result.stderr
