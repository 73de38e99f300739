"""Schemathesis against /openapi.json on a live server: no generated request may get a 5xx."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Server, child_env

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_no_server_error(fresh_server: Callable[..., Server], tmp_path: Path) -> None:
    server = fresh_server()
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", server.url("/openapi.json"), "--checks", "not_a_server_error",
         "--max-examples", "60", "--seed", "20261127", "--request-timeout", "20", "--no-color"],
        capture_output=True, text=True, timeout=300, env=child_env(), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "unexpected error" not in server.stderr()
