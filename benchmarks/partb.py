"""What CMS's Part B files cost the service (issue 18). A measurement, not a test: nothing fails.

    .venv/bin/python benchmarks/partb.py

Prints:
  1. loading the shipped quarters at start-up: decoding the merged index, and deriving it from the
     quarters when no index is stored (what `catalog import` does once), median of fresh processes;
  2. the memory a process gains by loading them (VmRSS before and after, in a fresh process);
  3. the drug lookup per call: `Formulary.facts` for the ways a chart names a drug, and the check of a
     captured drug line, in microseconds (median of many), and what the typical request's three
     administrations and one captured line add up to.
Limits (issue 18): the lookup at most 0.1 ms per typical call; start-up at most 1.5 s in all; at most 30 MB
more per worker. See benchmarks/README.md.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD = r"""
import json, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
import cds_service.drugs, cds_service.partb as pb  # the code, before the data
from cds_service.partb import build, names, stored
before = rss()
t = time.perf_counter()
files = stored.quarter_files([stored.SHIPPED])
of = (*stored.inputs(files), names.signature())
index = stored.find_index([stored.SHIPPED], of)
decoded = time.perf_counter()
partb = pb.PartB(index)
built = time.perf_counter()
after = rss()
derive = None
if sys.argv[1] == "derive":
    t2 = time.perf_counter()
    build.index([stored.read_quarter(p) for p in files.values()], of)
    derive = time.perf_counter() - t2
print(json.dumps({"decode": decoded - t, "index": built - decoded, "rss": after - before, "derive": derive,
                  "quarters": len(partb.quarters)}))
"""


def fresh(mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", LOAD, mode], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded: dict[str, float] = json.loads(out.stdout)
    return loaded


def per_call(fn, n: int = 20000) -> float:  # type: ignore[no-untyped-def]
    """Median microseconds of one call, over batches."""
    batches = []
    for _ in range(15):
        t = time.perf_counter()
        for _ in range(n // 15):
            fn()
        batches.append((time.perf_counter() - t) / (n // 15) * 1e6)
    return statistics.median(batches)


def main() -> int:
    from cds_service import config
    from cds_service.rules.model import Quantity, RouteClass
    from cds_service.runtime import terms_of

    print("CMS Part B files (issue 18)")
    runs = [fresh("decode") for _ in range(5)]
    derive = fresh("derive")
    print(f"  quarters loaded: {runs[0]['quarters']:.0f}")
    print("1. START-UP (fresh process each; median of 5)")
    print(f"   decode the stored merged index    {statistics.median(r['decode'] for r in runs) * 1000:7.1f} ms")
    print(f"   build the lookups over it         {statistics.median(r['index'] for r in runs) * 1000:7.1f} ms")
    print(f"   derive the index from the quarters {derive['derive'] * 1000:6.1f} ms  (done once, by catalog import)")
    print("2. MEMORY")
    print(f"   VmRSS gained by loading them      {statistics.median(r['rss'] for r in runs):7.1f} MB")

    formulary = terms_of(config.load(ROOT / "config" / "default.yaml")).formulary
    day = dt.date(2025, 3, 4)
    mg = Quantity(Decimal(40), "mg")
    ug = Quantity(Decimal(1000), "ug")
    cases = {
        "RxNorm of the catalog (the typical request)": ([("rxnorm", "309594")], ["Cyanocobalamin 1,000 mcg/mL"], ug),
        "NDC (CMS crosswalk), 4-4-2 form": ([("ndc", "0009-0280-02")], ["Depo-Medrol"], mg),
        "HCPCS code in the chart": ([("hcpcs", "J3121")], [], Quantity(Decimal(200), "mg")),
        "name only, catalog's names": ([], ["Depo-Medrol 40 mg/mL"], mg),
        "name only, CMS's names": ([], ["Prolia 60 mg/mL"], Quantity(Decimal(60), "mg")),
        "unknown drug": ([("rxnorm", "99999991")], ["Unobtainium 5 mg"], mg),
    }
    print("3. DRUG LOOKUP PER CALL (Formulary.facts, median of batches; first: the lookup itself, again: remembered)")
    print(f"   {'':<45} {'first':>8} {'again':>8}")
    typical = 0.0
    pick = formulary.partb.pick(day)
    for name, (codings, names, dose) in cases.items():
        first = per_call(lambda c=codings, n=names, d=dose: formulary._facts(c, n, pick, RouteClass.IM, d, None))
        micro = per_call(lambda c=codings, n=names, d=dose: formulary.facts(
            c, n, day=day, route=RouteClass.IM, dose=d, strength=None))
        if name.startswith("RxNorm"):
            typical = first
        print(f"   {name:<45} {first:7.2f}  {micro:7.2f} us")
    captured = per_call(lambda: formulary.captured("J3420", day))
    print(f"   {'a captured drug line (J3420)':<45} {captured:7.2f}  {captured:7.2f} us")
    total = 3 * typical + captured
    print(f"   typical request, nothing remembered: 3 administrations + 1 captured line = {total:.1f} us "
          f"({total / 1000:.3f} ms; limit 0.1 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
