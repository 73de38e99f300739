"""Merge stored quarters into the index a running service reads (`model.Index`).

This is the slow part (about 0.3 s for nine quarters), done when a quarter is imported, so that start-up
only decodes the result. An NDC whose rows do not change from quarter to quarter is kept once for the run
of quarters it holds: nine quarters of 7,000-8,000 rows make about 11,000 runs.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from cds_service.partb import names
from cds_service.partb.model import Code, Index, NdcRow, Package, Quarter, QuarterData, Run

# Words of labeler names that do not tell one maker from another.
COMMON_LABELER_WORDS = frozenset({
    "inc", "llc", "ltd", "usa", "corp", "corporation", "company", "pharma", "pharmaceuticals", "pharmaceutical",
    "labs", "laboratories", "healthcare", "health", "medical", "the", "and", "international", "limited", "gmbh",
    "biologics", "biosciences", "therapeutics", "sciences", "products", "holdings", "group", "global",
})


def index(quarters: Iterable[QuarterData], inputs: tuple[str, ...]) -> Index:
    """The merged index of these quarters; `inputs` names the stored files they came from."""
    loaded = sorted(quarters, key=lambda q: q.start)
    crosswalks = [q.has_crosswalk for q in loaded]
    codes_in = [{c.code for c in q.codes} for q in loaded]
    strings: dict[str | None, str | None] = {}
    successors: dict[tuple[int, str], set[str]] = defaultdict(set)
    predecessors: dict[tuple[int, str], set[str]] = defaultdict(set)
    labelled: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ndcs: dict[str, tuple[Run, ...]] = {}
    for ndc, by_quarter in ndc_rows(loaded).items():
        runs: list[Run] = []
        previous: tuple[int, list[NdcRow]] | None = None
        for i, group in sorted(by_quarter.items()):
            for row in group:
                labelled[row.name][row.code] |= 1 << i
            if previous is not None and previous[0] == i - 1 and crosswalks[i - 1] and crosswalks[i]:
                note_moves(i, {r.code for r in previous[1]}, {r.code for r in group}, codes_in,
                           successors, predecessors)
            if runs and runs[-1].last == i - 1 and previous is not None and previous[1] == group:
                runs[-1] = Run(runs[-1].first, i, runs[-1].packages)
            else:
                runs.append(Run(i, i, tuple(package(row, strings) for row in group)))
            previous = (i, group)
        ndcs[ndc] = tuple(runs)
    merged = tuple(quarter_of(q) for q in loaded)
    return Index(
        inputs=inputs,
        quarters=merged,
        ndcs=ndcs,
        successors=tuple((i, code, tuple(sorted(to))) for (i, code), to in sorted(successors.items())),
        predecessors=tuple((i, code, tuple(sorted(to))) for (i, code), to in sorted(predecessors.items())),
        names=name_table(merged, labelled),
        labelers=labeler_words(ndcs),
    )


def ndc_rows(loaded: list[QuarterData]) -> dict[str, dict[int, list[NdcRow]]]:
    """NDC -> quarter index -> its rows; identifiers that are not NDCs (skin substitutes) are left out."""
    out: dict[str, dict[int, list[NdcRow]]] = defaultdict(lambda: defaultdict(list))
    for i, quarter in enumerate(loaded):
        for row in quarter.ndcs:
            if len(row.ndc) == 11 and row.ndc.isdigit():
                out[row.ndc][i].append(row)
    return out


def note_moves(i: int, before: set[str], after: set[str], codes_in: list[set[str]],
               successors: dict[tuple[int, str], set[str]], predecessors: dict[tuple[int, str], set[str]]) -> None:
    """One NDC's codes in quarters i - 1 and i: a code dropped in quarter i moved to the codes the NDC bills
    under in i; a code first listed in i replaced the NDC's codes dropped in i (not ones still listed: an
    NDC under both J0883 and J0884 that gains a code did not leave them)."""
    dropped = {old for old in before - after if old not in codes_in[i]}
    for old in dropped:
        successors[(i - 1, old)] |= after - {old}
    for new in after - before:
        if new not in codes_in[i - 1] and dropped:
            predecessors[(i, new)] |= dropped


def package(row: NdcRow, strings: dict[str | None, str | None]) -> Package:
    """A package whose repeated texts (names, labelers, numbers) are one string each."""
    values = (row.ndc, row.code, row.name, row.labeler, row.pkg_size, row.pkg_qty, row.units, row.units_pkg)
    return Package(*(strings.setdefault(v, v) for v in values))  # type: ignore[arg-type]


def quarter_of(data: QuarterData) -> Quarter:
    return Quarter(
        id=data.quarter,
        start=dt.date.fromisoformat(data.start),
        end=dt.date.fromisoformat(data.end),
        codes={c.code: Code(c.code, c.description, c.dosage, Decimal(c.limit) if c.limit else None)
               for c in data.codes},
        has_crosswalk=data.has_crosswalk,
        has_limits=data.has_limits,
        ndc_count=len({n.ndc for n in data.ndcs}),
        sources=data.sources,
    )


def name_table(quarters: tuple[Quarter, ...], labelled: dict[str, dict[str, int]]
               ) -> tuple[tuple[tuple[str, ...], tuple[tuple[str, int], ...]], ...]:
    """Drug names (per NDC) and short descriptions (per code), as words -> (code, quarters as bits)."""
    by_name: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, codes in labelled.items():
        for code, bits in codes.items():
            by_name[name][code] |= bits
    for i, quarter in enumerate(quarters):
        for info in quarter.codes.values():
            by_name[info.description][info.code] |= 1 << i
    table: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, codes in by_name.items():
        for words in names.variants(name):
            for code, bits in codes.items():
                table[words][code] |= bits
    return tuple((words, tuple(sorted(codes.items()))) for words, codes in sorted(table.items()))


def labeler_words(ndcs: dict[str, tuple[Run, ...]]) -> dict[str, tuple[str, ...]]:
    """Per code, the distinctive words of its labelers' names ('hospira' of 'Hospira, Inc.')."""
    out: dict[str, set[str]] = defaultdict(set)
    for runs in ndcs.values():
        for run in runs:
            for p in run.packages:
                out[p.code] |= {w for w in names.TOKEN.findall(p.labeler.lower())
                                if len(w) > 3 and w not in COMMON_LABELER_WORDS}
    return {code: tuple(sorted(words)) for code, words in sorted(out.items())}
