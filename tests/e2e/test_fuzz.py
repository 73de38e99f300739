"""Schemathesis against /openapi.json on a live server: no generated request may get a 5xx, and the description
says exactly what is accepted: every request it allows is answered 2xx (or 412, the CDS Hooks answer when data is
neither prefetched nor obtainable), every answer has a documented status, content type and shape."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Server, child_env

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = ("not_a_server_error,positive_data_acceptance,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


def test_schemathesis_finds_no_5xx_and_no_refusal_the_description_allows(
        fresh_server: Callable[..., Server], tmp_path: Path) -> None:
    server = fresh_server()
    # Accepted: 2xx; 412, data neither prefetched nor obtainable; 401 and 404 for the report, which needs its own
    # token and is off without one (reports.token). Anything else for data the description allows is a failure.
    (tmp_path / "schemathesis.toml").write_text(
        '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "401", "404", "412"]\n')
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", server.url("/openapi.json"), "--checks", CHECKS,
         "--exclude-tag", "console",  # HTML forms behind a session and CSRF: tests/e2e/test_console.py drives them
         "--max-examples", "60", "--seed", "20261127", "--request-timeout", "20", "--no-color"],
        capture_output=True, text=True, timeout=300, env=child_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "unexpected error" not in server.stderr()
