"""Near-misses of FHIR R4 that real clients send, repaired instead of throwing the resource out.

A repair is made only where what the client meant cannot be mistaken, and only when every problem of the
resource is one of these; anything else still sets the resource aside (parse.validate):

- one value where R4 wants a list (the CDS Hooks sandbox's MedicationRequest.category): a list of one;
- a list of one where R4 wants one value: that value;
- a dateTime with a time but no time zone: read in the encounter's offset, else in UTC, and said so.

Each repair is described by where it was made and what was done, never with the value (it may be patient
data). The descriptions go to the evaluation log and to one info card (rules.quality)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

ROUNDS = 3  # a repair can uncover a problem inside what it repaired; errors report the outermost first
NAIVE_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?")
ZONE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
DATE_TIME_ERROR = "DateTime value string does not match spec regex"


def zone_of(encounter: Any) -> str | None:
    """The offset an encounter's period is written in ('-05:00', 'Z'), or None: the only time zone evidence."""
    if not isinstance(encounter, Mapping):
        return None
    if encounter.get("resourceType") == "Bundle":
        entries = encounter.get("entry")
        first = next((e.get("resource") for e in entries if isinstance(e, Mapping)), None) \
            if isinstance(entries, list) else None
        return zone_of(first)
    period = encounter.get("period")
    for key in ("start", "end"):
        value = period.get(key) if isinstance(period, Mapping) else None
        found = ZONE.search(value) if isinstance(value, str) and "T" in value else None
        if found:
            return found.group(1)
    return None


def repair(data: Mapping[str, Any], errors: Sequence[Mapping[str, Any]], zone: str | None,
           ) -> tuple[dict[str, Any], list[str]] | None:
    """A copy of data with every error repaired and what was done, or None when an error is not a near-miss."""
    fixed = copy.deepcopy(dict(data))
    notes: list[str] = []
    done: set[tuple[Any, ...]] = set()
    for error in errors:
        loc = tuple(error.get("loc") or ())
        if loc in done:
            continue  # a union reports each of its members' complaints about one value
        found = locate(fixed, loc)
        if found is None:
            return None
        parent, key = found
        value = parent[key]
        kind, message = error.get("type"), str(error.get("msg", ""))
        where = path(loc)
        if kind == "list_type" and not isinstance(value, list) and value is not None:
            parent[key] = [value]
            notes.append(f"{where}: one value where FHIR R4 wants a list; read as a list of one")
        elif kind in ("model_type", "dict_type") and isinstance(value, list) and len(value) == 1:
            parent[key] = value[0]
            notes.append(f"{where}: a list of one where FHIR R4 wants one value; read as that value")
        elif (kind == "value_error" and DATE_TIME_ERROR in message and isinstance(value, str)
              and NAIVE_DATE_TIME.fullmatch(value)):
            parent[key] = value + (":00" if value.count(":") == 1 else "") + (zone or "Z")  # R4 wants seconds
            zone_text = f"the encounter's offset ({zone})" if zone and zone != "Z" else "UTC"
            notes.append(f"{where}: a date-time without a time zone; read in {zone_text}")
        else:
            return None
        done.add(loc)
    return fixed, notes


def locate(data: Any, loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """The container and key an error's location names in the JSON, or None when it does not lead there."""
    if not loc:
        return None
    node = data
    for step in loc[:-1]:
        node = step_into(node, step)
        if node is None:
            return None
    last = loc[-1]
    if isinstance(node, dict) and isinstance(last, str) and last in node:
        return node, last
    if isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
        return node, last
    return None


def step_into(node: Any, step: Any) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return None


def path(loc: tuple[Any, ...]) -> str:
    """('category',) -> 'category'; ('dosage', 'route', 0) -> 'dosage.route[0]'."""
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out
