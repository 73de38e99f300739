"""Feedback analytics per rule: cards shown, accepted, overridden, override rate, top override reasons."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cds_service.store import cards_issued, feedback, flush_pending

TOP_REASONS = 3


@dataclass
class RuleStats:
    rule: str
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    top_override_reasons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def override_rate(self) -> float | None:
        """Overrides as a share of the feedback received (accepted + overridden)."""
        acted = self.accepted + self.overridden
        return round(self.overridden / acted, 4) if acted else None


def rule_report(engine: Engine, since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[RuleStats]:
    """Per rule over [since, until): cards issued, feedback by outcome, and the commonest override reasons.

    Feedback stored before its card's log row was written (the card came from another instance, which writes
    that log behind) has no rule of its own; it takes the card's rule, found by an outer join.
    """
    flush_pending(engine)
    with_card = feedback.outerjoin(cards_issued, cards_issued.c.card_uuid == feedback.c.card_uuid)
    rule = sa.func.coalesce(feedback.c.rule_id, cards_issued.c.rule_id, "(unknown card)")
    shown_q = sa.select(cards_issued.c.rule_id, sa.func.count()).group_by(cards_issued.c.rule_id)
    outcome_q = (
        sa.select(rule, feedback.c.outcome, sa.func.count()).select_from(with_card).group_by(rule, feedback.c.outcome)
    )
    reason = sa.func.coalesce(feedback.c.override_display, feedback.c.override_code, "(no reason given)")
    reasons_q = (
        sa.select(rule, reason, sa.func.count().label("n"))
        .select_from(with_card)
        .where(feedback.c.outcome == "overridden")
        .group_by(rule, reason)
        .order_by(rule, sa.desc("n"), reason)
    )
    if since is not None:
        shown_q = shown_q.where(cards_issued.c.issued_at >= since)
        outcome_q = outcome_q.where(feedback.c.outcome_timestamp >= since)
        reasons_q = reasons_q.where(feedback.c.outcome_timestamp >= since)
    if until is not None:
        shown_q = shown_q.where(cards_issued.c.issued_at < until)
        outcome_q = outcome_q.where(feedback.c.outcome_timestamp < until)
        reasons_q = reasons_q.where(feedback.c.outcome_timestamp < until)
    stats: dict[str, RuleStats] = {}
    with engine.connect() as conn:
        for rule_id, n in conn.execute(shown_q):
            stats.setdefault(rule_id, RuleStats(rule_id)).shown = n
        for rule_id, outcome, n in conn.execute(outcome_q):
            entry = stats.setdefault(rule_id, RuleStats(rule_id))
            if outcome == "accepted":
                entry.accepted = n
            elif outcome == "overridden":
                entry.overridden = n
        for rule_id, text, n in conn.execute(reasons_q):
            entry = stats.setdefault(rule_id, RuleStats(rule_id))
            if len(entry.top_override_reasons) < TOP_REASONS:
                entry.top_override_reasons.append({"reason": text, "count": n})
    return sorted(stats.values(), key=lambda s: s.rule)


def as_dicts(stats: Sequence[RuleStats]) -> list[dict[str, Any]]:
    return [asdict(s) | {"override_rate": s.override_rate} for s in stats]


def reasons_text(s: RuleStats) -> str:
    return "; ".join(f"{r['reason']} ({r['count']})" for r in s.top_override_reasons)


def render(stats: Sequence[RuleStats], fmt: str) -> str:
    """The report as an aligned table, CSV or JSON."""
    if fmt == "json":
        return json.dumps({"rules": as_dicts(stats), "override_rate": OVERRIDE_RATE}, indent=2)
    header = ["rule", "shown", "accepted", "overridden", "override_rate", "top_override_reasons"]
    rows = [[s.rule, str(s.shown), str(s.accepted), str(s.overridden),
             "" if s.override_rate is None else f"{s.override_rate:.1%}", reasons_text(s)] for s in stats]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()  # CSV stays rows only; the definition is in the table and JSON forms
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", OVERRIDE_RATE]) + "\n"


DAY = re.compile(r"\d{4}-?\d{2}-?\d{2}")  # a date without a time: 2025-03-31 or 20250331
OVERRIDE_RATE = ("override rate = overridden / (accepted + overridden): the share of the feedback received that "
                 "overrode the card; cards without feedback do not count")


def parse_range(since: str | None, until: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The instants [since, until) of a report asked for by days or date-times, alike in the CLI, the console
    and GET /reports/feedback: a day as `until` is included whole (2025-03-31: up to 2025-04-01T00:00Z); a
    date-time is the first instant left out. ValueError for anything else."""
    end = parse_day(until)
    if end is not None and until is not None and DAY.fullmatch(until.strip()):
        try:
            end += dt.timedelta(days=1)
        except OverflowError:  # 9999-12-31: no day after it, so no upper bound
            end = None
    return parse_day(since), end


def parse_day(value: str | None) -> dt.datetime | None:
    """'2025-03-04' (a UTC day) or a full ISO date-time, as its instant in UTC; None stays None. ValueError for a
    date-time outside years 1 to 9999 in UTC (0001-01-01T00:00:00+14:00), which no database comparison can take."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    try:
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except OverflowError:
        raise ValueError(f"{value} falls outside years 1 to 9999 in UTC") from None
