"""Instructions per typical hook call, counted by valgrind's callgrind: a figure that the host's speed does not move.

    .venv/bin/python benchmarks/instructions.py [--calls 60] [--floor]

On this shared host the wall-clock figures of run.py and ab.py drift by half from one hour to the next;
the count of instructions a call executes does not (the same code gives the same count to about 0.1%).
It is not the time: cache misses and the two threads of a worker are not in it. Use it to see whether a
change to the Python work of a call removes work, then ab.py to see what that is worth over HTTP.

The script runs itself under callgrind (Debian package valgrind; about 3 minutes): `create_app` on
run.py's configuration, 150 warm-up calls through the WSGI app with run.py's distinct typical requests, then
`--calls` more with the garbage collector off (a collection of the old generations lands in one window and
not another, and would swamp a small change), counted from the start to the end of that loop only.
`--floor` counts floor_app.py instead.
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


def wsgi_app(floor: bool, work: Path) -> Any:
    if floor:
        import floor_app

        return floor_app.app
    from cds_service.app import create_app

    app = create_app(run.write_config(work, "instructions"))
    run.silence_logs()
    return app


def calls(app: Any, count: int) -> None:
    """WARM_UP calls, then `count` inside functools.reduce (what callgrind counts), with the collector off."""
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

    for i in range(WARM_UP):
        call(None, i)
    gc.collect()
    gc.freeze()
    gc.disable()
    functools.reduce(call, range(count), None)
    gc.enable()
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"non-200 answers: {sorted(set(bad))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--floor", action="store_true", help="count floor_app.py instead of the service")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # the run under callgrind
    args = parser.parse_args(argv)
    if args.inside:
        with tempfile.TemporaryDirectory(prefix="cds-instructions-") as work:
            calls(wsgi_app(args.floor, Path(work)), args.calls)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian: apt-get install -y valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cds-callgrind-") as out:
        argv_inner = [sys.executable, __file__, "--inside", "--calls", str(args.calls)] + (["--floor"] if args.floor
                                                                                           else [])
        done = subprocess.run(
            [valgrind, "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect={MEASURED}",
             f"--callgrind-out-file={out}/callgrind.out", *argv_inner],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=False,
        )
        found = re.search(r"Collected : ([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
    total = int(found.group(1).replace(",", ""))
    print(f"{'floor' if args.floor else 'service'}: {total / args.calls:,.0f} instructions per typical call "
          f"({args.calls} calls after {WARM_UP} to warm up, garbage collector off)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
