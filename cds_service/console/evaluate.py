"""What the console computes: the bundled examples, one evaluation, and the what-if comparison.

Every evaluation takes the path of POST /cds-services/{id} (protocol.parse_hook_request, then
service.handle_hook) without a JWT and without writing to the store.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cds_service import config as configuration
from cds_service import protocol, runtime
from cds_service.cards import card_id
from cds_service.errors import (
    BodyTooLarge,
    CDSError,
    ConfigError,
    FhirDataUnavailable,
    InvalidHookRequest,
    UnknownService,
)
from cds_service.fhir.client import FhirClient
from cds_service.jsontext import loads
from cds_service.runtime import Runtime
from cds_service.service import Call, Outcome
from cds_service.web.errors import GENERIC_500, outcome_body

log = logging.getLogger("cds_service.console")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
CLOSE_HOOK_PLACEHOLDER = "__CLOSE_HOOK__"
MAX_CONFIG_NODES = 200_000  # a pasted configuration larger than this once YAML aliases are expanded is refused


@dataclass(frozen=True)
class Example:
    id: str
    description: str
    service: str
    request: Mapping[str, Any]

    def request_for(self, close_hook: str) -> dict[str, Any]:
        """A copy of the request, with the close-hook placeholder replaced by the configured hook."""
        body: dict[str, Any] = copy.deepcopy(dict(self.request))
        if body.get("hook") == CLOSE_HOOK_PLACEHOLDER:
            body["hook"] = close_hook
        return body


@cache
def examples() -> tuple[Example, ...]:
    """The public scenarios shipped with the package, in file order."""
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out.append(Example(data["id"], data.get("description", ""), data["service"], data["request"]))
    return tuple(out)


def example(example_id: str) -> Example | None:
    return next((e for e in examples() if e.id == example_id), None)


@dataclass
class Evaluation:
    """One evaluated request: the answer the API gives (response, or an OperationOutcome) and its time."""

    service_id: str | None
    status: int
    body: dict[str, Any]
    elapsed_ms: float
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def message(self) -> str:
        issues = self.body.get("issue") or [{}]
        return str(issues[0].get("diagnostics", ""))

    @property
    def cards(self) -> list[dict[str, Any]]:
        return list(self.body.get("cards", [])) if self.ok else []


def parse_body(text: str, rt: Runtime) -> Any:
    """The JSON text as the API would read it: 413 past the size limit, 400 when malformed or too deep."""
    if len(text.encode("utf-8", errors="replace")) > rt.settings.max_body_bytes:
        raise BodyTooLarge("The request body is larger than this service accepts.")
    return loads(text.encode("utf-8", errors="surrogatepass"), rt.settings.max_json_depth)


def service_for(body: Any, rt: Runtime, chosen: str | None) -> protocol.ServiceDef:
    """The chosen service, or (none chosen) the one whose hook the request names."""
    if chosen:
        service = rt.services.get(chosen)
        if service is None:
            raise UnknownService(f"No CDS service with id '{chosen}'.")
        return service
    hook = body.get("hook") if isinstance(body, dict) else None
    for service in rt.services.values():
        if service.hook == hook:
            return service
    raise InvalidHookRequest("No service answers this request's hook: choose a service.")


def evaluate(rt: Runtime, text: str, service_id: str | None) -> Evaluation:
    """Evaluate a request the way POST /cds-services/{id} does, without JWT and without storing cards."""
    started = time.perf_counter()
    chosen = service_id
    try:
        body = parse_body(text, rt)
        service = service_for(body, rt, service_id)
        chosen = service.id
        outcome = run(rt, body, service)
        return Evaluation(chosen, 200, outcome.response, elapsed(started), outcome)
    except CDSError as exc:
        return Evaluation(chosen, exc.status, outcome_body(exc.status, exc.code, exc.message), elapsed(started))
    except Exception as exc:  # as the API: a generic 500, details only in the log
        log.error(json.dumps({"event": "console_evaluation_failed", "error": type(exc).__name__}))
        return Evaluation(chosen, 500, outcome_body(500, "exception", GENERIC_500), elapsed(started))


def run(rt: Runtime, body: Any, service: protocol.ServiceDef) -> Outcome:
    # Not recorded: console evaluations are not cards shown to a clinician.
    return rt.answer(Call(service.id), lambda: (body, False), service, record=False)


def elapsed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# ---------------------------------------------------------------- what if


def offline_client(base_url: str, token: str | None) -> FhirClient:
    """The what-if never calls a FHIR server: the bundled examples carry all their data."""
    raise FhirDataUnavailable("The what-if evaluates offline; this example needs data from its fhirServer.")


def node_count_exceeds(value: Any, limit: int) -> bool:
    """True when the document, with YAML aliases expanded, has more than limit nodes."""
    stack, seen = [value], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def what_if_runtime(rt: Runtime, text: str) -> tuple[Runtime | None, list[str]]:
    """A second Runtime, in memory only, from a pasted configuration; or the problems, each by path."""
    if len(text.encode("utf-8", errors="replace")) > rt.settings.max_body_bytes:
        return None, ["(document): larger than this service accepts"]
    try:
        data = configuration.safe_load(text)
    except yaml.YAMLError as exc:
        return None, [f"(document): not valid YAML: {exc}"]
    if node_count_exceeds(data, MAX_CONFIG_NODES):
        return None, ["(document): too large once its aliases are expanded"]
    if isinstance(data, dict) and "extends" in data:
        return None, ["extends: not supported here; paste the whole configuration"]
    found = configuration.problems(data) or configuration.semantic_problems(data)
    if found:
        return None, found
    try:
        settings = configuration.build(data, "(what-if)", rt.settings.partb)  # the quarters already loaded
        # No JWT verifier: it would read key files named by the pasted text, and the console needs none.
        settings = dataclasses.replace(settings, auth=dataclasses.replace(settings.auth, required=False))
        other = runtime.build(settings, rt.store, dict(rt.renderer.templates))
    except ConfigError as exc:
        return None, exc.problems
    except Exception as exc:  # schema-valid yet unusable
        return None, [f"(document): cannot be used ({type(exc).__name__})"]
    return dataclasses.replace(other, make_fhir_client=offline_client), []


CardKey = tuple[str, str, int]  # rule, subject, n-th card of that rule and subject


def keyed_cards(evaluation: Evaluation, hook_instance: str) -> dict[CardKey, dict[str, Any]]:
    """The cards of an answer by rule and subject (the administration or order, or the encounter)."""
    if evaluation.outcome is None:
        return {}
    cards = evaluation.cards
    by_uuid = {card["uuid"]: card for card in cards}
    counts: Counter[tuple[str, str]] = Counter()
    out: dict[CardKey, dict[str, Any]] = {}
    for n, finding in enumerate(evaluation.outcome.findings):
        # The uuid cards.CardRenderer gives the n-th finding; a finding missing here was cut by max-cards.
        card = by_uuid.get(card_id(hook_instance, finding, n)[1])
        if card is None:
            continue
        subject = finding.subject or "(encounter)"
        out[(finding.rule, subject, counts[(finding.rule, subject)])] = card
        counts[(finding.rule, subject)] += 1
    if len(out) != len(cards):  # cannot tell subjects apart: key by rule and order
        counts.clear()
        out = {}
        for card in cards:
            rule = card["source"]["topic"]["code"]
            out[(rule, "", counts[(rule, "")])] = card
            counts[(rule, "")] += 1
    return out


def comparable(card: Mapping[str, Any]) -> dict[str, Any]:
    """A card without its uuids, which change with the position of the finding."""
    out = {k: v for k, v in card.items() if k != "uuid"}
    if "suggestions" in out:
        out["suggestions"] = [{k: v for k, v in s.items() if k != "uuid"} for s in out["suggestions"]]
    return out


@dataclass
class CardChange:
    kind: str  # appears | disappears | changes
    rule: str
    subject: str
    before: str | None  # summary
    after: str | None
    fields: list[str] = field(default_factory=list)  # what changed, for "changes"


@dataclass
class ExampleDiff:
    example: Example
    before: Evaluation
    after: Evaluation
    changes: list[CardChange]
    unchanged: int

    @property
    def status_changed(self) -> bool:
        return self.before.status != self.after.status


def diff(before: dict[CardKey, dict[str, Any]], after: dict[CardKey, dict[str, Any]]) -> tuple[list[CardChange], int]:
    changes, unchanged = [], 0
    for key in [*before, *(k for k in after if k not in before)]:
        rule, subject, _ = key
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            changes.append(CardChange("appears", rule, subject, None, new["summary"]))
        elif new is None and old is not None:
            changes.append(CardChange("disappears", rule, subject, old["summary"], None))
        elif old is not None and new is not None:
            a, b = comparable(old), comparable(new)
            if a == b:
                unchanged += 1
                continue
            fields = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            if old.get("indicator") != new.get("indicator"):
                fields = [f"indicator {old.get('indicator')} \u2192 {new.get('indicator')}",
                          *(f for f in fields if f != "indicator")]
            changes.append(CardChange("changes", rule, subject, old["summary"], new["summary"], fields))
    return changes, unchanged


def evaluate_example(rt: Runtime, item: Example) -> Evaluation:
    return evaluate(rt, json.dumps(item.request_for(rt.settings.close_hook)), item.service)


def compare(active: Runtime, other: Runtime) -> list[ExampleDiff]:
    """Every bundled example under both configurations, and how their cards differ."""
    active = dataclasses.replace(active, make_fhir_client=offline_client)
    out = []
    for item in examples():
        before, after = evaluate_example(active, item), evaluate_example(other, item)
        hook_instance = str(item.request.get("hookInstance", ""))
        changes, unchanged = diff(keyed_cards(before, hook_instance), keyed_cards(after, hook_instance))
        out.append(ExampleDiff(item, before, after, changes, unchanged))
    return out
