"""The cds-service command: serve, evaluate, check-config, report, db, audit."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from cds_service import config as configuration
from cds_service.config import Settings
from cds_service.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cds-service", description="CDS Hooks service for injection billing.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve under gunicorn")
    serve.add_argument("--config", help="YAML configuration (default: $CDS_SERVICE_CONFIG or config/default.yaml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    evaluate = commands.add_parser("evaluate", help="print the CDS Hooks response for a saved request")
    evaluate.add_argument("request", help='a CDS Hooks request as JSON, or a scenario file with one under "request"')
    evaluate.add_argument("--config")
    evaluate.add_argument("--service", help="service id (default: the service of the request's hook)")

    check = commands.add_parser("check-config", help="validate a configuration file against its JSON Schema")
    check.add_argument("file")

    report = commands.add_parser("report", help="feedback per rule: shown, accepted, overridden, override rate")
    report.add_argument("--config")
    report.add_argument("--since", help="first day (UTC), e.g. 2025-03-01")
    report.add_argument("--until", help="last day (UTC), inclusive; or a date-time, the first instant left out")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")

    audit = commands.add_parser("audit", help="run the rules over a FHIR Bulk Data export; write findings and a report")
    audit.add_argument("export_dir", help="folder of NDJSON files (*.ndjson, *.ndjson.gz)")
    audit.add_argument("--out", required=True, help="folder for findings.csv, summary.json and report.html")
    audit.add_argument("--config")
    audit.add_argument("--since", help="first encounter start date (local), e.g. 2025-01-01")
    audit.add_argument("--until", help="last encounter start date (local), inclusive")
    audit.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    audit.add_argument("--engine", choices=["local", "dask"], default="local",
                       help="local: processes on this machine; dask: a Dask cluster (the dask extra)")
    audit.add_argument("--scheduler", help="with --engine dask: a running scheduler, e.g. tcp://host:8786 "
                       "(default: a LocalCluster of --workers processes)")

    catalog = commands.add_parser("catalog", help="CMS's quarterly Part B drug files: import a quarter, list, look up")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    importing = catalog_commands.add_parser("import", help="add quarters from CMS's files as downloaded (CSV or ZIP)")
    importing.add_argument("files", nargs="+", help="the quarter's NDC-HCPCS crosswalk and payment-limit files")
    importing.add_argument("--config")
    importing.add_argument("--dir", help="store the quarters here (default: the configuration's cms.quarters_dir)")
    importing.add_argument("--allow-shrink", action="store_true",
                           help="import a quarter with under half the lines of the one before (refused otherwise)")
    catalog_commands.add_parser("quarters", help="list the quarters loaded").add_argument("--config")
    lookup = catalog_commands.add_parser("lookup", help="a drug by NDC, HCPCS/CPT code or name, quarter by quarter")
    lookup.add_argument("query")
    lookup.add_argument("--config")

    db = commands.add_parser("db", help="the store's schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "migrate the store to the latest revision"), ("current", "print its revision")):
        db_commands.add_parser(name, help=text).add_argument("--config")

    args = parser.parse_args(argv)
    handler = {
        "serve": run_serve, "evaluate": run_evaluate, "check-config": run_check_config, "report": run_report,
        "db": run_db, "audit": run_audit, "catalog": run_catalog,
    }[args.command]
    return handler(args)


def load_settings(path: str | None) -> Settings | None:
    """The checked settings, or None after printing every problem (the caller exits 2)."""
    try:
        return configuration.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def run_check_config(args: argparse.Namespace) -> int:
    from cds_service.partb import report

    settings = load_settings(args.file)
    if settings is None:
        return 2
    print(f"{args.file}: valid")
    for line in report.quarters(settings.partb):
        print(line)
    for line in report.disagreements(settings.catalog, settings.partb):
        print(f"warning: {line}")
    return 0


def run_catalog(args: argparse.Namespace) -> int:
    from cds_service.partb import report

    if args.catalog_command == "import":
        return run_catalog_import(args)
    settings = load_settings(args.config)
    if settings is None:
        return 2
    if args.catalog_command == "quarters":
        print("\n".join(report.quarters(settings.partb)))
        return 0
    if args.catalog_command == "lookup":
        lines = list(report.lookup_lines(settings.partb, args.query))
        print("\n".join(lines) if lines else f"{args.query}: not in CMS's Part B files")
        return 0 if lines else 1
    return 2


def run_catalog_import(args: argparse.Namespace) -> int:
    """Import without loading the quarters stored already: a damaged one is mended by importing it again."""
    from cds_service.partb import importing
    from cds_service.partb.files import CmsFileError
    from cds_service.partb.stored import StoredDataError

    directory = Path(args.dir) if args.dir else None
    if directory is None:
        try:
            path = args.config or os.environ.get("CDS_SERVICE_CONFIG") or configuration.DEFAULT_CONFIG
            data = configuration.read(path)
            found = configuration.problems(data)
            if found:
                raise ConfigError(str(path), found)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        directory = configuration.quarters_dir(data)
    try:
        changes = importing.import_files([Path(f) for f in args.files], directory, allow_shrink=args.allow_shrink)
    except CmsFileError as exc:
        print(f"refused: {exc}\nnothing was imported; the quarters loaded are as they were", file=sys.stderr)
        return 2
    except (StoredDataError, OSError) as exc:
        print(f"cannot store the quarter in {directory}: {exc}", file=sys.stderr)
        return 2
    for change in changes:
        print("\n".join(importing.describe(change)))
    print(f"stored in {directory}; a running service loads it at its next configuration check")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from cds_service import analytics
    from cds_service.store import FeedbackStore

    try:
        settings = configuration.load(args.config)
        since, until = analytics.parse_range(args.since, args.until)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError:
        print("--since and --until take ISO dates, e.g. 2025-03-01", file=sys.stderr)
        return 2
    store = FeedbackStore(settings.store_url)
    try:
        print(analytics.render(analytics.rule_report(store.engine, since, until), args.format), end="")
    except Exception as exc:  # noqa: BLE001 - a store that does not answer is a clean exit 2
        print(f"the store does not answer: {type(exc).__name__}", file=sys.stderr)
        return 2
    finally:
        store.dispose()
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    try:
        body = json.loads(Path(args.request).read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"cannot read {args.request}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{args.request} is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        from cds_service.app import create_app

        app = create_app(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    services = app.extensions["cds"].services
    scenario_service = None
    if isinstance(body, dict) and "hook" not in body and isinstance(body.get("request"), dict):
        named = body.get("service")
        scenario_service = named if isinstance(named, str) and named in services else None
        body = body["request"]  # a scenario file (tests/fixtures, ../shared/scenarios): the request is a member
    if not isinstance(body, dict) or not isinstance(body.get("hook"), str):
        print(f"{args.request}: expected a CDS Hooks request (a JSON object with hook, hookInstance and context), "
              "or a scenario file with one under \"request\"; this has no \"hook\"", file=sys.stderr)
        return 2
    service_id = args.service or scenario_service or next(
        (s.id for s in services.values() if s.hook == body["hook"]), None
    )
    if service_id is None:
        hooks = ", ".join(sorted({s.hook for s in services.values()}))
        print(f"{args.request}: hook {body['hook']!r} is none of this service's hooks ({hooks}); "
              "name a service with --service", file=sys.stderr)
        return 2
    response = app.test_client().post(f"/cds-services/{service_id}", json=body)
    payload: Any = response.get_json(silent=True)
    if response.status_code != 200:
        issue = (payload or {}).get("issue", [{}])[0] if isinstance(payload, dict) else {}
        print(f"HTTP {response.status_code}: {issue.get('diagnostics', response.status)}", file=sys.stderr)
        return 2
    print(json.dumps(payload, indent=2))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings is None:
        return 2
    from cds_service.server import serve

    return serve(
        settings,
        config_path=args.config,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
    )


def run_db(args: argparse.Namespace) -> int:
    from cds_service import migrations
    from cds_service.store import make_engine

    settings = load_settings(args.config)
    if settings is None:
        return 2
    engine = make_engine(settings.store_url)
    try:
        revision = migrations.upgrade(engine) if args.db_command == "upgrade" else migrations.current(engine)
    except Exception as exc:  # noqa: BLE001 - a store that does not answer, or a failed migration, is exit 2
        print(f"db {args.db_command}: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"{revision or 'none'}{' (head)' if revision == migrations.head() else ''}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    import sqlite3
    from concurrent.futures.process import BrokenProcessPool

    from cds_service.audit import common, job

    try:
        since, until = (dt.date.fromisoformat(v) if v else None for v in (args.since, args.until))
    except ValueError:
        print("--since and --until take ISO dates, e.g. 2025-03-01", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("--workers must be 1 or more", file=sys.stderr)
        return 2
    if not Path(args.export_dir).is_dir():
        print(f"{args.export_dir}: no such directory", file=sys.stderr)
        return 2
    if args.scheduler and args.engine != "dask":
        print("--scheduler goes with --engine dask", file=sys.stderr)
        return 2
    audit = common.AuditJob(Path(args.export_dir), Path(args.out), args.config, since, until, args.workers,
                         progress=sys.stderr.isatty(), engine=args.engine, scheduler=args.scheduler)
    try:
        result = job.run(audit)
    except (ConfigError, common.EmptyExport) as exc:
        print(exc, file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if args.engine != "dask" or exc.name is None or exc.name.split(".")[0] not in ("dask", "distributed"):
            raise
        print("--engine dask needs Dask: pip install 'cds-service[dask]'", file=sys.stderr)
        return 2
    except common.ClusterUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    except BrokenProcessPool:
        print("a worker process died (killed, or out of memory?); try fewer --workers", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write the report: {exc.strerror or exc} ({exc.filename or args.out})", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # the scratch file in --out: unwritable, or the disk is full
        print(f"cannot write the audit's scratch file in {args.out}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("audit interrupted; no report written", file=sys.stderr)
        return 130
    for line in result.summary["skipped"]["lines"][:10]:
        print(f"skipped {line['file']}:{line['line']}: {line['error']}", file=sys.stderr)
    print(job.describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
