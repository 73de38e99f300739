"""cds-service audit --engine dask: the same findings, summary and skipped lines as the local path.

The exports come from benchmarks/make_export.py. The cluster is a real dask.distributed LocalCluster of
two worker processes: the command starts its own, and the other tests share one, reached by its address
as --scheduler reaches a cluster.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.audit import common, dask_path
from cds_service.cli import main
from tests.e2e.conftest import free_port
from tests.integration.test_audit import audit, findings, make_export

distributed = pytest.importorskip("distributed")

SMALL_BLOCKS = 16 * 1024  # cuts each plain file of the test export into several blocks
VARYING = ("generated_at", "seconds", "export_dir")


@pytest.fixture(scope="module")
def export_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("export") / "plain", 300, "--seed", "11")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a LocalCluster of two worker processes, closed after the module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster:
        yield cluster.scheduler_address


def on_cluster(export: Path, out: Path, scheduler: str, blocksize: int = SMALL_BLOCKS) -> dict[str, Any]:
    result = dask_path.run(common.AuditJob(export, out, workers=2, engine="dask", scheduler=scheduler), blocksize)
    return result.summary


def same(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in VARYING}


def test_the_command_with_engine_dask_writes_the_same_files_as_the_local_path(
    export_300: Path, tmp_path: Path
) -> None:
    local = audit(export_300, tmp_path / "local", "--workers", "2")
    on_dask = audit(export_300, tmp_path / "dask", "--workers", "2", "--engine", "dask")

    assert (tmp_path / "dask" / "findings.csv").read_bytes() == (tmp_path / "local" / "findings.csv").read_bytes()
    assert same(on_dask) == same(local)
    assert on_dask["encounters"] > 280 and on_dask["findings"] == len(findings(tmp_path / "dask")) > 500
    assert (tmp_path / "dask" / "report.html").stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == ["findings.csv", "report.html", "summary.json"]


def test_gzip_several_files_and_blocks_cut_inside_files_give_the_same_findings(
    export_300: Path, scheduler: str, tmp_path: Path
) -> None:
    mixed = make_export(tmp_path / "mixed", 300, "--seed", "11", "--gzip", "--split", "2")
    for name in ("Encounter.ndjson.gz", "MedicationAdministration.ndjson.gz"):  # plain files, cut in blocks
        (mixed / name.removesuffix(".gz")).write_bytes(gzip.decompress((mixed / name).read_bytes()))
        (mixed / name).unlink()
    assert (mixed / "MedicationAdministration.ndjson").stat().st_size > 4 * SMALL_BLOCKS

    local = audit(export_300, tmp_path / "local", "--workers", "1")
    on_dask = on_cluster(mixed, tmp_path / "dask", scheduler)

    assert sorted(findings(tmp_path / "dask"), key=str) == sorted(findings(tmp_path / "local"), key=str)
    assert findings(tmp_path / "dask") == findings(tmp_path / "local")  # and in the same order
    assert {k: v for k, v in same(on_dask).items() if k != "workers"} == {
        k: v for k, v in same(local).items() if k != "workers"}


def test_malformed_lines_are_reported_with_the_local_paths_file_and_line_and_skipped(
    export_300: Path, scheduler: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(export_300, broken)
    admins = (broken / "MedicationAdministration.ndjson").read_text().splitlines()
    bad = json.loads(admins[200])  # in a later block than the first
    bad["effectiveDateTime"] = "yesterday"  # not an R4 dateTime
    bad.pop("effectivePeriod", None)
    admins[200] = json.dumps(bad)
    admins[150:150] = ['{"resourceType": "MedicationAdministration", "id": "cut', "[1, 2]"]
    (broken / "MedicationAdministration.ndjson").write_text("\n".join(admins) + "\n")
    coverages = (broken / "Coverage.ndjson").read_bytes()
    (broken / "Coverage.ndjson").write_bytes(coverages + b"\xff\xfe\n")
    (broken / "Extra.ndjson.gz").write_bytes(b"this is not gzip\n")

    local = audit(broken, tmp_path / "local", "--workers", "1")
    on_dask = on_cluster(broken, tmp_path / "dask", scheduler)

    lines = on_dask["skipped"]["lines"]
    assert [(s["file"], s["line"]) for s in lines] == [
        ("Coverage.ndjson", coverages.count(b"\n") + 1), ("Extra.ndjson.gz", 1),
        ("MedicationAdministration.ndjson", 151), ("MedicationAdministration.ndjson", 152),
        ("MedicationAdministration.ndjson", 203),  # past the first blocks of the file
    ]
    assert [s["error"].split(":")[0] for s in lines] == [
        "not UTF-8 text", "the file cannot be read past this line", "not valid JSON", "not a JSON object but list",
        "invalid FHIR MedicationAdministration",
    ]
    assert on_dask["skipped"] == local["skipped"]
    assert findings(tmp_path / "dask") == findings(tmp_path / "local")
    assert bad["id"] not in {r["admin_id"] for r in findings(tmp_path / "dask")}
    assert on_dask["encounters"] == local["encounters"] > 280


def test_an_unreachable_scheduler_is_a_message_and_exit_2(
    export_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_path, "CONNECT_TIMEOUT", "1s")
    address = f"tcp://127.0.0.1:{free_port()}"
    argv = ["audit", str(export_300), "--out", str(tmp_path / "out"), "--engine", "dask", "--scheduler", address]
    assert main(argv) == 2
    assert f"cannot reach the Dask scheduler at {address}" in capsys.readouterr().err
    assert main(argv[:-4] + ["--scheduler", address]) == 2
    assert "--scheduler goes with --engine dask" in capsys.readouterr().err
