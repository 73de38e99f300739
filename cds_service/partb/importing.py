"""`cds-service catalog import`: add quarters from CMS's files as downloaded, and say what changed.

The files are read and checked whole before anything is written: a file with a wrong header, a bad code or
a bad billing unit is refused with its line and the reason, and the stored quarters stay as they were. A
quarter is written first, then the merged index over every quarter; a running service sees the new files
on its next configuration check and loads them (see `reload`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from msgspec import Struct
from msgspec.structs import replace

from cds_service.partb import build, files, names, stored
from cds_service.partb.model import CodeRow, QuarterData, quarter_label
from cds_service.partb.ndc import hyphenated
from cds_service.units import parse_dosage


class Changes(Struct, frozen=True):
    """What a quarter changes against the one before it."""

    quarter: str
    against: str | None
    added: tuple[tuple[str, str, str], ...] = ()  # (code, description, billing unit)
    dropped: tuple[tuple[str, str], ...] = ()  # (code, description)
    units: tuple[tuple[str, str, str], ...] = ()  # (code, billing unit before, after)
    moved: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()  # (NDC, codes before, after)
    replaced: bool = False  # the quarter was stored already
    partial: str | None = None  # which of the two files is missing, if one is


SHRINK = 0.5  # a quarter listing under half the codes or NDCs of the one before is taken for a cut-short file


def import_files(paths: list[Path], directory: Path, shipped: Path = stored.SHIPPED,
                 allow_shrink: bool = False) -> list[Changes]:
    """Check the files, store their quarters in `directory`, and store the merged index of every quarter."""
    cms_files = files.open_files(paths)
    by_quarter: dict[str, list[files.CmsFile]] = defaultdict(list)
    for cms_file in cms_files:
        by_quarter[cms_file.quarter].append(cms_file)
    dirs = [shipped] if directory.resolve() == shipped.resolve() else [shipped, directory]
    known = stored.quarter_files(dirs)
    new = {quarter: completed(files.read_quarter(group), known.get(quarter)) for quarter, group in by_quarter.items()}
    merged = {q: stored.read_quarter(path) for q, path in known.items() if q not in new} | new
    order = sorted(merged)
    out = []
    for quarter, data in sorted(new.items()):
        before = order.index(quarter) - 1
        if before >= 0 and not allow_shrink:
            refuse_shrink(by_quarter[quarter], merged[order[before]], data)
        changes = diff(merged[order[before]] if before >= 0 else None, data)
        out.append(replace(changes, replaced=quarter in known, partial=missing_part(data)))
    # The new merged index first, then the quarters, then old indexes out: a service reloading meanwhile
    # finds an index for whichever set of quarter files it sees, and never derives one on a request.
    packed = {quarter: stored.pack(quarter_data) for quarter, quarter_data in new.items()}
    files_now: dict[str, Path | bytes] = {q: path for q, path in known.items() if q not in new}
    of = (*stored.inputs({**files_now, **packed}), names.signature())
    index = stored.write_index(build.index(merged.values(), of), directory, keep_others=True)
    for quarter, stored_bytes in packed.items():
        stored.write_atomically(directory / f"{quarter}{stored.SUFFIX}", stored_bytes)
    stored.remove_other_indexes(directory, index)
    return out


def refuse_shrink(files_read: list[files.CmsFile], before: QuarterData, data: QuarterData) -> None:
    """A quarter far smaller than the one before it is a file cut short (a broken download), not CMS's."""
    names = ", ".join(f.name for f in files_read)
    if data.has_crosswalk and before.has_crosswalk and len(data.ndcs) < SHRINK * len(before.ndcs):
        raise files.CmsFileError(names, None, f"{len(data.ndcs)} NDC lines against {len(before.ndcs)} in "
                                 f"{quarter_label(before.quarter)}: cut short? (--allow-shrink imports it anyway)")
    priced = [c for c in data.codes if c.priced]
    if data.has_limits and before.has_limits and len(priced) < SHRINK * sum(c.priced for c in before.codes):
        raise files.CmsFileError(names, None, f"{len(priced)} priced codes against "
                                 f"{sum(c.priced for c in before.codes)} in {quarter_label(before.quarter)}: "
                                 "cut short? (--allow-shrink imports it anyway)")


def completed(data: QuarterData, stored_path: Path | None) -> QuarterData:
    """A quarter given by one file only keeps the other file's part from the quarter stored already: the new
    file replaces its own part whole (a code a corrected payment-limit file leaves out is gone)."""
    if stored_path is None or (data.has_crosswalk and data.has_limits):
        return data
    old = stored.read_quarter(stored_path)
    if not data.has_crosswalk and old.has_crosswalk:  # new payment limits over the old crosswalk
        listed = {r.code for r in old.ndcs}
        codes = {c.code: replace(c, limit=None, priced=False) for c in old.codes if c.code in listed}
        codes |= {c.code: c for c in data.codes}
        return replace(data, ndcs=old.ndcs, has_crosswalk=True, codes=sorted_codes(codes),
                       sources=tuple(sorted({*data.sources, *(s for s in old.sources if s.startswith("crosswalk:"))})))
    if not data.has_limits and old.has_limits:  # a new crosswalk under the old payment limits
        codes = {c.code: c for c in data.codes} | {c.code: c for c in old.codes if c.priced}
        return replace(data, has_limits=True, codes=sorted_codes(codes),
                       sources=tuple(sorted({*data.sources, *(s for s in old.sources if s.startswith("payment-"))})))
    return data


def sorted_codes(codes: dict[str, CodeRow]) -> tuple[CodeRow, ...]:
    return tuple(sorted(codes.values(), key=lambda c: c.code))


def missing_part(data: QuarterData) -> str | None:
    if not data.has_crosswalk:
        return "no NDC-HCPCS crosswalk: NDCs are looked up in the nearest quarter that has one"
    if not data.has_limits:
        return "no payment-limit file: no payment limits, and no vaccine codes, for this quarter"
    return None


def diff(before: QuarterData | None, after: QuarterData) -> Changes:
    if before is None:
        return Changes(after.quarter, None)
    old = {c.code: c for c in before.codes}
    new = {c.code: c for c in after.codes}
    units = tuple(
        (code, old[code].dosage, new[code].dosage)
        for code in sorted(old.keys() & new.keys()) if not same_unit(old[code].dosage, new[code].dosage)
    )
    then, now = ndc_codes(before), ndc_codes(after)
    moved = tuple(
        (ndc, tuple(sorted(then[ndc])), tuple(sorted(now[ndc])))
        for ndc in sorted(then.keys() & now.keys()) if then[ndc] != now[ndc]
    ) if before.has_crosswalk and after.has_crosswalk else ()
    return Changes(
        quarter=after.quarter,
        against=before.quarter,
        added=tuple((c, new[c].description, new[c].dosage) for c in sorted(new.keys() - old.keys())),
        dropped=tuple((c, old[c].description) for c in sorted(old.keys() - new.keys())),
        units=units,
        moved=moved,
    )


def same_unit(a: str, b: str) -> bool:
    da, db = parse_dosage(a), parse_dosage(b)
    if da.computable and db.computable:
        return (da.value, da.unit) == (db.value, db.unit)
    return " ".join(a.upper().split()) == " ".join(b.upper().split())


def ndc_codes(data: QuarterData) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for row in data.ndcs:
        if len(row.ndc) == 11 and row.ndc.isdigit():
            out[row.ndc].add(row.code)
    return out


def describe(changes: Changes) -> Iterator[str]:
    """The lines `catalog import` prints for one quarter."""
    label = quarter_label(changes.quarter)
    verb = "replaced" if changes.replaced else "added"
    yield f"{label}: {verb}" + (f" ({changes.partial})" if changes.partial else "")
    if changes.against is None:
        yield "  the first quarter loaded: nothing to compare with"
        return
    yield f"  against {quarter_label(changes.against)}:"
    yield f"  codes added: {len(changes.added)}"
    yield from (f"    + {code}  {text}  ({unit})" for code, text, unit in changes.added)
    yield f"  codes dropped: {len(changes.dropped)}"
    yield from (f"    - {code}  {text}" for code, text in changes.dropped)
    yield f"  billing units changed: {len(changes.units)}"
    yield from (f"    ~ {code}  {old} -> {new}" for code, old, new in changes.units)
    pairs: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = defaultdict(list)
    for ndc, old_codes, new_codes in changes.moved:
        pairs[(old_codes, new_codes)].append(hyphenated(ndc))
    yield f"  NDCs moved to another code: {len(changes.moved)}"
    for (old_codes, new_codes), ndcs in sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(ndcs[:5]) + (f" and {len(ndcs) - 5} more" if len(ndcs) > 5 else "")
        yield f"    > {'/'.join(old_codes)} -> {'/'.join(new_codes)}: {len(ndcs)} NDC(s): {shown}"
