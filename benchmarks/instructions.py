"""Instructions per typical hook call, counted by valgrind's callgrind: a figure that the host's speed does not move.

    .venv/bin/python benchmarks/instructions.py [--calls 60] [--floor] [--stages]

On this shared host the wall-clock figures of run.py and ab.py drift by half from one hour to the next;
the count of instructions a call executes does not (the same code gives the same count to about 0.1%).
It is not the time: cache misses and the two threads of a worker are not in it. Use it to see whether a
change to the Python work of a call removes work, then ab.py to see what that is worth over HTTP.

The script runs itself under callgrind (Debian package valgrind; about 3 minutes): `create_app` on
run.py's configuration, 150 warm-up calls through the WSGI app with run.py's distinct typical requests, then
`--calls` more with the garbage collector off (a collection of the old generations lands in one window and
not another, and would swamp a small change), counted from the start to the end of that loop only.
`--floor` counts floor_app.py instead.

`--stages` also counts the stages of a call apart (about 2 minutes more): the calls of
`cds_service.service.handle_hook` made one by one as run.py's time per stage makes them, each stage over the
same `--calls` requests in a loop of its own (callgrind writes a count at the end of each loop). A stage's
results are kept until every stage has run, so freeing them is not in any stage: "rest" (the whole call less
the stages) holds it, with the lane, the logs, the metrics and the evaluation log's row.
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402
import run  # noqa: E402

WARM_UP = 150
MEASURED = "functools_reduce"  # callgrind counts inside this C function only: the measured loop
STAGES = {  # --stages: (name, what it is), in the order handle_hook calls them
    "json": "JSON body: orjson, the nesting and plain-text checks (jsontext.loads_plain)",
    "request": "the CDS Hooks request check and prefetch (protocol, fhir.prefetch)",
    "fhir": "FHIR validation into Structs (fhir.parse.read)",
    "facts": "facts.build",
    "plan": "the billing plan (rules.prepare)",
    "rules": "rules.evaluate",
    "cards": "cards (CardRenderer.render)",
    "store": "the card rows queued (store.record_cards)",
    "answer": "the answer's JSON (web.hooks.json_bytes)",
}


def wsgi_app(floor: bool, work: Path) -> Any:
    if floor:
        import floor_app

        return floor_app.app
    from cds_service.app import create_app

    app = create_app(run.write_config(work, "instructions"))
    run.silence_logs()
    return app


def calls(app: Any, count: int, warm_up: int = WARM_UP) -> None:
    """warm_up calls, then `count` inside functools.reduce (what callgrind counts), with the collector off."""
    from werkzeug.test import EnvironBuilder

    bodies = run.bodies(3, run.N_BODIES, seed=2024)
    path = f"/cds-services/{payloads.SERVICE_ID}"
    environs = [EnvironBuilder(path=path, method="POST", data=b, content_type="application/json").get_environ()
                for b in bodies]
    statuses: list[str] = []

    def call(_: Any, i: int) -> None:
        environ = dict(environs[i % len(bodies)], **{"wsgi.input": io.BytesIO(bodies[i % len(bodies)])})
        out = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(out)
        getattr(out, "close", lambda: None)()

    for i in range(warm_up):
        call(None, i)
    gc.collect()
    gc.freeze()
    gc.disable()
    functools.reduce(call, range(count), None)
    gc.enable()
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"non-200 answers: {sorted(set(bad))}")


def stage_calls(app: Any, count: int) -> None:
    """One loop of `count` per stage (STAGES, in order), then one of whole calls: each is a count of its own."""
    from cds_service import facts, rules
    from cds_service.fhir import parse
    from cds_service.jsontext import loads_plain
    from cds_service.service import enabled_rules
    from cds_service.web.hooks import json_bytes

    rt = app.extensions["cds"]
    settings, service = rt.settings, rt.services[payloads.SERVICE_ID]
    bodies = run.bodies(3, run.N_BODIES, seed=2024)
    raw = [bodies[i % len(bodies)] for i in range(count)]

    def loop(step: Any) -> list[Any]:
        out: list[Any] = [None] * count

        def call(_: Any, i: int) -> None:
            out[i] = step(i)

        gc.collect()
        gc.disable()
        functools.reduce(call, range(count), None)
        gc.enable()
        return out

    def one_round() -> None:
        """Every stage's loop in turn; what each gives is kept until the round ends (freed on return)."""
        body = loop(lambda i: loads_plain(raw[i], settings.max_json_depth))
        reqs = loop(lambda i: run.checked_request(rt, service, body[i][0]))
        resources = loop(lambda i: parse.read(reqs[i][1], None, reqs[i][0].context.get("encounterId"),
                                              {*reqs[i][0].prefetch, parse.DRAFT_ORDERS} if body[i][1] else ()))
        if any(r.invalid for r in resources):  # the stages would count another call than the typical one
            raise SystemExit("a typical request's resources did not validate")
        visits = loop(lambda i: facts.build(resources[i], rt.terms, hook_kind=service.kind,
                                            patient_id=str(reqs[i][0].context["patientId"]),
                                            encounter_id=reqs[i][0].context.get("encounterId")))
        planned = loop(lambda i: rules.prepare(visits[i]))
        found = loop(lambda i: tuple(rules.evaluate(planned[i], enabled_rules(settings, reqs[i][0].options))))
        cards = loop(lambda i: rt.renderer.render(found[i], planned[i], reqs[i][0].hook_instance,
                                                  resources[i].charge_json))
        loop(lambda i: rt.store.record_cards(service.id, reqs[i][0].hook_instance, cards[i]))
        loop(lambda i: json_bytes({"cards": cards[i]}, app.json.default))

    for _ in range(2):  # the first round warms what the second counts (main reads the last counts)
        one_round()
        calls(app, count, warm_up=0)


def stage_table(dumps: list[int], count: int) -> str:
    """The per-stage counts (the last len(STAGES) + 1 dumps: the stages, then the whole calls) as a table."""
    per_call = [n / count for n in dumps[-(len(STAGES) + 1):]]
    whole, stages = per_call[-1], dict(zip(STAGES, per_call, strict=False))
    rows = [f"   {'stage':<10}{'instructions':>14}{'share':>8}   what"]
    rows += [f"   {name:<10}{n:>14,.0f}{100 * n / whole:>7.1f}%   {STAGES[name]}" for name, n in stages.items()]
    rest = whole - sum(stages.values())
    rows.append(f"   {'rest':<10}{rest:>14,.0f}{100 * rest / whole:>7.1f}%   the whole call less the stages: the lane,"
                " logs, metrics, the evaluation log, freeing the call's objects")
    rows.append(f"   {'whole':<10}{whole:>14,.0f}{100.0:>7.1f}%   one call through the WSGI app")
    return "\n".join(rows)


def dump_totals(directory: Path) -> list[int]:
    """Each dump's total, in the order callgrind wrote them (callgrind.out.1, .2, ...)."""
    files = sorted(directory.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
    totals = []
    for path in files:
        found = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.M)
        totals.append(int(found.group(1)) if found else 0)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--floor", action="store_true", help="count floor_app.py instead of the service")
    parser.add_argument("--stages", action="store_true", help="also count the stages of a call apart")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # the run under callgrind
    args = parser.parse_args(argv)
    if args.stages and args.floor:
        parser.error("--stages counts the service's stages: not with --floor")
    if args.inside:
        with tempfile.TemporaryDirectory(prefix="cds-instructions-") as work:
            app = wsgi_app(args.floor, Path(work))
            calls(app, args.calls)
            if args.stages:
                stage_calls(app, args.calls)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian: apt-get install -y valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cds-callgrind-") as out:
        argv_inner = [sys.executable, __file__, "--inside", "--calls", str(args.calls), *(["--floor"] if args.floor
                                                                                        else []),
                      *(["--stages"] if args.stages else [])]
        dump = [f"--dump-after={MEASURED}"] if args.stages else []
        done = subprocess.run(
            [valgrind, "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect={MEASURED}", *dump,
             f"--callgrind-out-file={out}/callgrind.out", *argv_inner],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=False,
        )
        found = re.search(r"Collected : ([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        dumps = dump_totals(Path(out)) if args.stages else []
    total = int(found.group(1).replace(",", ""))
    if args.stages:  # the plain calls' loop, then two rounds of the stages' loops and a loop of whole calls each
        total = dumps[-2 * (len(STAGES) + 1) - 1]
    print(f"{'floor' if args.floor else 'service'}: {total / args.calls:,.0f} instructions per typical call "
          f"({args.calls} calls after {WARM_UP} to warm up, garbage collector off)")
    if args.stages:
        print(f"\nBy stage, per call ({args.calls} calls a stage, after a round that warms them):")
        print(stage_table(dumps, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
