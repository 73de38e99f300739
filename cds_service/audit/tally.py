"""The counters of summary.json, kept as rows stream past: nothing grows with the size of the export."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cds_service.audit.findings import MISSED_UNITS

TOP_ENCOUNTERS = 20
SKIPPED_LINES = 100


@dataclass(frozen=True)
class Skip:
    file: int  # index into the job's sorted list of files
    line: int
    error: str


@dataclass
class Tally:
    files: list[str]  # relative to the export directory
    encounters: int = 0
    patients: int = 0
    administrations: int = 0
    findings: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    rule_info: dict[str, tuple[str, str]] = field(default_factory=dict)  # rule id -> (group, indicator)
    by_month: dict[str, Counter[str]] = field(default_factory=dict)
    units_missed: Counter[str] = field(default_factory=Counter)
    at_risk: dict[str, Decimal] = field(default_factory=dict)  # rule id -> Medicare Part B limit of its drug lines
    at_risk_lines: Decimal = Decimal(0)  # the same, each drug line once (a line at risk under several rules)
    top: list[tuple[int, str, str, tuple[str, ...]]] = field(default_factory=list)  # (-findings, enc, patient, rules)
    skipped: int = 0
    first_skips: list[Skip] = field(default_factory=list)
    seen_skips: set[tuple[int, int]] = field(default_factory=set)  # shared lines (Medications) reported once

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count a batch of rows: whole encounters, so a drug line's rows are all in it (counted once here)."""
        lines: dict[tuple[str, str], Decimal] = {}
        for row in rows:
            self.findings += 1
            self.by_rule[row["rule_id"]] += 1
            self.rule_info.setdefault(row["rule_id"], (row["group"], row["indicator"]))
            if row["month"]:
                self.by_month.setdefault(row["month"], Counter())[kind_of(row["action"])] += 1
            self.units_missed.update(row.get(MISSED_UNITS) or {})
            if row.get("part_b_limit"):
                rule_id, limit = row["rule_id"], Decimal(row["part_b_limit"])
                self.at_risk[rule_id] = self.at_risk.get(rule_id, Decimal(0)) + limit
                lines[(row.get("encounter_id", ""), row.get("admin_id", ""))] = limit  # an admin's one drug line
        self.at_risk_lines += sum(lines.values(), Decimal(0))

    def add_flagged(self, patient_id: str, flagged: Iterable[tuple[str, int, tuple[str, ...]]]) -> None:
        """Keep the encounters with the most findings, ties by id."""
        self.top += [(-count, encounter_id, patient_id, rules) for encounter_id, count, rules in flagged]
        if len(self.top) > 4 * TOP_ENCOUNTERS:
            self.top = sorted(self.top)[:TOP_ENCOUNTERS]

    def skip(self, skip: Skip, shared: bool = False) -> None:
        if shared:
            if (skip.file, skip.line) in self.seen_skips:
                return
            self.seen_skips.add((skip.file, skip.line))
        self.skipped += 1
        self.first_skips.append(skip)
        if len(self.first_skips) > 4 * SKIPPED_LINES:
            self.first_skips = sorted(self.first_skips, key=skip_order)[:SKIPPED_LINES]

    def summary(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """summary.json: `meta` gives generated_at, export_dir, config, since, until, workers and seconds."""
        return {
            **meta,
            "encounters": self.encounters,
            "patients": self.patients,
            "administrations": self.administrations,
            "findings": self.findings,
            "by_rule": {
                rule_id: {"count": count, "group": self.rule_info[rule_id][0], "indicator": self.rule_info[rule_id][1],
                          "part_b_limit": str(self.at_risk.get(rule_id, Decimal("0.00")))}
                for rule_id, count in sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
            },
            "by_month": {
                month: {kind: counts[kind] for kind in ("missed", "incorrect", "other")}
                for month, counts in sorted(self.by_month.items())
            },
            "units_missed_by_drug": dict(sorted(self.units_missed.items())),
            "part_b_limit_at_risk": str(self.at_risk_lines.quantize(Decimal("0.01"))),
            "top_encounters": [
                {"encounter_id": enc, "patient_id": patient, "findings": -negative, "rules": list(rules)}
                for negative, enc, patient, rules in sorted(self.top)[:TOP_ENCOUNTERS]
            ],
            "skipped": {
                "count": self.skipped,
                "lines": [
                    {"file": self.files[s.file], "line": s.line, "error": s.error}
                    for s in sorted(self.first_skips, key=skip_order)[:SKIPPED_LINES]
                ],
            },
        }


def kind_of(action: str) -> str:
    """missed: the card creates a charge; incorrect: it changes or removes one; other: neither."""
    parts = action.split("+")
    if "create" in parts:
        return "missed"
    if "update" in parts or "delete" in parts:
        return "incorrect"
    return "other"


def skip_order(skip: Skip) -> tuple[int, int]:
    return skip.file, skip.line
