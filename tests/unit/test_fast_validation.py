"""The generated validators (cds_service/fhir/fast.py and structs.py) against fhir.resources R4B itself.

Every resource of a type the service reads, found anywhere in the test fixtures and in ../shared (the
official R4 examples, Synthea, the CDS Hooks examples, the scenarios), plus systematic mutations of each
one: dropped elements, wrong JSON types, nulls in lists, unknown elements, two choices of one [x]
element. For each, the pydantic models must give fhir.resources' verdict, and when valid, the same
values; the msgspec Structs, which only accept, may accept only what fhir.resources accepts, with the same
values.
"""

from __future__ import annotations

import copy
import decimal
import json
import subprocess
import sys
import typing
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as fhir_types
from pydantic import BaseModel, TypeAdapter, ValidationError

from cds_service.fhir import parse, structs
from cds_service.jsontext import only_plain_whitespace
from tests.conftest import FIXTURES, ROOT

SOURCES = [FIXTURES, ROOT / "cds_service" / "console" / "examples", ROOT.parent / "shared"]


def resources_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every object with a resourceType the service reads, at any depth (Bundles, prefetch, contained)."""
    if isinstance(value, dict):
        if value.get("resourceType") in parse.READ_TYPES:
            yield value
        for item in value.values():
            yield from resources_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from resources_in(item)


def corpus() -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for base in SOURCES:
        for path in sorted(base.rglob("*")):
            if path.suffix not in {".json", ".ndjson", ".jsonl"} or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            docs = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix != ".json" \
                else [json.loads(text)]
            for resource in (r for doc in docs for r in resources_in(doc)):
                key = json.dumps(resource, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(resource)
    return out


CORPUS = corpus()


def plain(value: Any) -> Any:
    """A model as nested dicts by field name, without unset fields, for comparing two model families."""
    if isinstance(value, BaseModel | msgspec.Struct):
        fields = type(value).model_fields if isinstance(value, BaseModel) else value.__struct_fields__
        return {name: plain(getattr(value, name)) for name in fields
                if name != "resource_type" and getattr(value, name) is not None}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def is_plain_text(data: Any) -> bool:
    """Whether data, written as JSON, is what the service reads with the PLAIN Structs (jsontext.loads_plain)."""
    try:
        return only_plain_whitespace(orjson.dumps(data))
    except orjson.JSONEncodeError:  # a lone surrogate, a number past 64 bits, nesting past 255
        return False


def verdict(data: Any) -> tuple[bool, Any]:
    rtype = data["resourceType"]
    try:
        full = get_fhir_model_class(rtype).model_validate(data)
    except (ValidationError, ValueError, TypeError):
        full = None
    try:
        fast = parse.models()[rtype].model_validate(data)
    except ValidationError:
        fast = None
    assert (full is None) == (fast is None), (
        f"fhir.resources says {'invalid' if full is None else 'valid'}, the fast model the opposite"
    )
    quick = structs.accept(parse.structs()[rtype], data)
    assert quick is None or full is not None, "the Structs accept what fhir.resources refuses"
    text_plain = is_plain_text(data)
    plain_quick = structs.accept(parse.structs(structs.PLAIN)[rtype], data, plain=True) if text_plain else None
    assert plain_quick is None or full is not None, "the PLAIN Structs accept what fhir.resources refuses"
    if full is not None:
        assert plain(fast) == plain(full)
        if quick is not None:
            assert plain(quick) == plain(full)
        if plain_quick is not None:
            assert plain(plain_quick) == plain(full)
        if text_plain:
            assert (plain_quick is None) == (quick is None), "the PLAIN Structs decide otherwise than the others"
    if rtype == "MedicationAdministration":  # another encounter's: read for HISTORY_ELEMENTS only
        light = {key: data[key] for key in parse.HISTORY_ELEMENTS if key in data}
        try:
            light_full = get_fhir_model_class(rtype).model_validate(light)
        except (ValidationError, ValueError, TypeError):
            light_full = None
        light_quick = structs.accept(parse.history_struct(), data)
        assert light_quick is None or light_full is not None, "the history Struct accepts what fhir.resources refuses"
        if light_quick is not None:
            assert plain(light_quick) == plain(light_full)
        if text_plain:
            light_plain = structs.accept(parse.history_struct(structs.PLAIN), data, plain=True)
            assert (light_plain is None) == (light_quick is None)
            if light_plain is not None:
                assert plain(light_plain) == plain(light_full)
    return full is not None, fast


def mutations(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Systematic damage to the resource and to its elements one level down."""
    yield "unknown element", {**resource, "bogus": 1}
    yield "id a number", {**resource, "id": 42}
    for key, value in resource.items():
        if key == "resourceType":
            continue
        yield f"without {key}", {k: v for k, v in resource.items() if k != key}
        if isinstance(value, str | bool | int | float) and key != "id":
            yield f"_{key} empty", {**resource, f"_{key}": {}}
            yield f"_{key} with a null extension", {**resource, f"_{key}": {"extension": None}}
            yield f"_{key} with an id", {**resource, f"_{key}": {"id": "x1"}}
        for label, bad in wrong_values(value):
            yield f"{key}: {label}", {**resource, key: bad}
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                for label, bad in wrong_values(inner_value):
                    yield f"{key}.{inner}: {label}", {**resource, key: {**value, inner: bad}}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner in list(value[0]):
                yield f"{key}[0] without {inner}", {**resource, key: [
                    {k: v for k, v in value[0].items() if k != inner}, *value[1:]]}
    for prefix in ("medication", "effective", "onset", "abatement", "occurrence", "reported"):
        present = [k for k in resource if k.startswith(prefix) and k[len(prefix):][:1].isupper()]
        if present:
            other = "Period" if not present[0].endswith("Period") else "DateTime"
            value: Any = {"start": "2020-01-01"} if other == "Period" else "2020-01-01"
            yield f"two {prefix}[x]", {**resource, f"{prefix}{other}": value}


def wrong_values(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, list):
        yield "null in list", [*value, None]
        yield "not a list", value[0] if value else {}
        yield "empty list", []
    elif isinstance(value, dict):
        yield "a list", [value]
        yield "a string", "x"
        yield "empty object", {}
    elif isinstance(value, str):
        yield "a number", 7
        yield "an object", {"value": value}
        yield "empty string", ""
        yield "padded", f" {value} "
        yield "a final newline", f"{value}\n"
        yield "only a vertical tab", "\v"
        yield "two inner spaces", value.replace(" ", "  ") if " " in value else f"{value}  x"
    elif isinstance(value, bool):
        yield "a string", "true"
    elif isinstance(value, int | float):
        yield "a string", str(value)
        yield "huge", 10**30
        yield "a float", value + 0.5
        yield "negative", -value - 1
        yield "a boolean", True


def test_the_corpus_holds_every_type_read() -> None:
    types = {r["resourceType"] for r in CORPUS}
    assert {"Encounter", "MedicationAdministration", "MedicationRequest", "Condition", "Coverage",
            "ChargeItem", "Medication"} <= types, types
    assert len(CORPUS) >= 150


@pytest.mark.parametrize("resource", CORPUS, ids=lambda r: f"{r['resourceType']}/{r.get('id', '?')}")
def test_same_verdict_and_values_as_fhir_resources(resource: dict[str, Any]) -> None:
    verdict(copy.deepcopy(resource))
    for _label, mutated in mutations(resource):
        verdict(copy.deepcopy(mutated))


def test_a_resource_type_that_is_not_the_models_is_refused() -> None:
    admin = next(r for r in CORPUS if r["resourceType"] == "MedicationAdministration")
    with pytest.raises(ValidationError):
        parse.models()["MedicationAdministration"].model_validate({**admin, "resourceType": "Patient"})


def test_the_history_view_keeps_what_the_frequency_rule_reads() -> None:
    admin = next(r for r in CORPUS if r["resourceType"] == "MedicationAdministration" and "context" in r)
    into = parse.Resources()
    light = parse.validate("x", admin, into, history=True)
    full = parse.validate("x", admin, into)
    assert not into.invalid
    for name in ("id", "status", "medicationCodeableConcept", "medicationReference", "effectiveDateTime",
                 "effectivePeriod", "context", "subject"):
        assert plain(getattr(light, name)) == plain(getattr(full, name))
    assert light.dosage is None and light.meta is None


@pytest.mark.parametrize(("change", "valid"), [
    ({"dosage": "not an object", "bogus": 1}, True),  # not read for history: passed over, as before
    ({"status": 7}, False),
    ({"effectivePeriod": {"start": "2020-01-01"}}, False),  # two effective[x]
    ({"medicationCodeableConcept": {"coding": [None]}}, False),
])
def test_the_history_view_checks_what_it_reads_and_only_that(change: dict[str, Any], valid: bool) -> None:
    admin = next(r for r in CORPUS if r["resourceType"] == "MedicationAdministration"
                 and "medicationCodeableConcept" in r and "effectiveDateTime" in r)
    into = parse.Resources()
    light = parse.validate("x", {**admin, **change}, into, history=True)
    assert (light is not None) is valid and len(into.invalid) == (0 if valid else 1)
    if valid:
        assert light.dosage is None and light.status == admin["status"]


def test_invalid_resources_are_described_by_path_without_their_values() -> None:
    into = parse.Resources()
    data = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2025-03-04T10:00:00",
            "medicationCodeableConcept": {"text": "B12", "coding": [None]}, "secret": "123-45-6789"}
    assert parse.validate("administrations", data, into) is None
    (problem,) = into.invalid
    assert problem.resource_type == "MedicationAdministration" and problem.resource_id == "a1"
    text = " ".join(problem.problems)
    assert "effectiveDateTime" in text and "secret" in text and "coding" in text
    assert "123-45-6789" not in text


def test_a_contained_resource_nested_past_the_recursion_limit_is_invalid_not_a_crash() -> None:
    """Past 255 levels the Structs leave it to pydantic, which refuses it as fhir.resources does (the depth
    of JSON is bounded before, where it is read: server.max_json_depth)."""
    extension: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(400):
        extension = {"url": "http://example.org/nest", "extension": [extension]}
    data = {"resourceType": "MedicationAdministration", "id": "deep", "status": "completed",
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2025-03-04",
            "medicationReference": {"reference": "#med"},
            "contained": [{"resourceType": "Medication", "id": "med", "extension": [extension]}]}
    into = parse.Resources()
    assert parse.validate("administrations", data, into) is None
    assert [(p.resource_type, p.resource_id) for p in into.invalid] == [("MedicationAdministration", "deep")]


def test_the_structs_accept_every_valid_resource_of_the_corpus_in_strict_json() -> None:
    """The fast path is the usual one: it leaves to pydantic only contained types it has no Struct for."""
    known = set(structs.RESOURCES[structs.STRICT])
    for resource in CORPUS:
        _valid, fast = verdict(copy.deepcopy(resource))
        if fast is not None and all(c.get("resourceType") in known for c in resource.get("contained", [])):
            assert structs.accept(parse.structs()[resource["resourceType"]], resource) is not None, resource.get("id")


PATTERNED = {name: getattr(fhir_types, name)
             for name in ("StringType", "CodeType", "IdType", "OidType", "UriType", "MarkdownType")}
PATTERN_STRUCT = {
    name: msgspec.defstruct(f"Only{name}", [("value", structs._primitive(annotation))])
    for name, annotation in PATTERNED.items()
}
SPACES = [chr(c) for c in range(sys.maxunicode + 1)
          if chr(c).isspace() or (not chr(c).isprintable() and c < 0x3000) or 0xD800 <= c <= 0xDFFF]


@pytest.mark.parametrize("name", sorted(PATTERNED))
def test_a_pattern_read_by_python_accepts_only_what_pydantic_accepts(name: str) -> None:
    """pydantic-core's Rust regex and Python's re differ on whitespace and on `$`, and pydantic-core refuses
    a lone surrogate: check every whitespace, control or surrogate character alone, around a word and
    inside one."""
    adapter, struct = TypeAdapter(PATTERNED[name]), PATTERN_STRUCT[name]
    for char in SPACES:
        for text in (char, f"a{char}", f"{char}a", f"a{char}b", f"a{char}{char}b", f"urn:oid:1.2{char}"):
            if structs.accept(struct, {"value": text}) is not None:  # type: ignore[arg-type]
                assert adapter.validate_python(text) == text, repr(text)


PLAIN_PATTERN_STRUCT = {
    name: msgspec.defstruct(f"PlainOnly{name}", [("value", structs._primitive(annotation, structs.PLAIN))])
    for name, annotation in PATTERNED.items()
}


@pytest.mark.parametrize("name", sorted(PATTERNED))
def test_a_plain_pattern_accepts_only_what_pydantic_accepts_in_plain_text(name: str) -> None:
    """The PLAIN Structs read a string as a String without its pattern, where the text is plain."""
    adapter, struct = TypeAdapter(PATTERNED[name]), PLAIN_PATTERN_STRUCT[name]
    for char in [*SPACES, "", "a"]:
        for text in (char, f"{char}{char}", f"a{char}", f"{char}a", f"a{char}{char}b", f"urn:oid:1.2{char}"):
            if not is_plain_text({"value": text}):
                continue
            try:
                expected = adapter.validate_python(text) == text
            except ValidationError:
                expected = False
            assert (structs.accept(struct, {"value": text}, plain=True) is not None) == expected, repr(text)  # type: ignore[arg-type]


def test_codes_and_oids_are_pydantics_verdict_and_only_short_ones_are_remembered() -> None:
    """A code or oid goes through fhir_core's type; what is remembered stays small: 64 characters at most.
    An id, nearly always new, keeps msgspec's pattern check."""
    struct = PLAIN_PATTERN_STRUCT["CodeType"]

    def remembered() -> int:
        return structs.REMEMBERED.cache_info().currsize

    structs.REMEMBERED.cache_clear()
    long_code = "x" * (structs.REMEMBERED_LENGTH + 1)
    assert structs.accept(struct, {"value": long_code}, plain=True).value == long_code  # type: ignore[arg-type, union-attr]
    assert remembered() == 0
    short_code = "x" * structs.REMEMBERED_LENGTH
    assert structs.accept(struct, {"value": short_code}, plain=True).value == short_code  # type: ignore[arg-type, union-attr]
    assert structs.accept(struct, {"value": short_code}, plain=True) is not None  # type: ignore[arg-type]
    assert remembered() == 1 and structs.REMEMBERED.cache_info().hits == 1
    for refused in ("a  b", " a", "", 5, None, ["a"], {"a": 1}):
        assert structs.accept(struct, {"value": refused}, plain=True) is None, repr(refused)  # type: ignore[arg-type]
    assert remembered() == 1  # an exception is not remembered
    oid = PLAIN_PATTERN_STRUCT["OidType"]
    assert structs.accept(oid, {"value": "urn:oid:2.16.840.1"}, plain=True) is not None  # type: ignore[arg-type]
    assert structs.accept(oid, {"value": "urn:oid:2.16.0840"}, plain=True) is None  # type: ignore[arg-type]
    id_type = structs._primitive(fhir_types.IdType, structs.PLAIN)
    assert not (isinstance(id_type, type) and issubclass(id_type, structs.Converted))


def test_the_memo_keeps_apart_values_that_compare_equal_and_keeps_out_big_ones() -> None:
    """1, 1.0 and True are equal keys to a dict; -0.0 equals 0.0; a base64 attachment is long: each is
    read with the value pydantic gives it, whatever was read before."""
    decimal_struct = msgspec.defstruct("OnlyDecimal", [("value", structs._primitive(fhir_types.DecimalType))])
    adapter = TypeAdapter(fhir_types.DecimalType)
    structs.REMEMBERED.cache_clear()
    for value in (1, 1.0, True, 0.0, -0.0, 0, 1, 1.0, -0.0, 0.0, 2**63, -(2**63), 2**63, 0.5, 0.5):
        try:
            expected = adapter.validate_python(value)
        except ValidationError:
            assert structs.accept(decimal_struct, {"value": value}) is None, repr(value)  # type: ignore[arg-type]
            continue
        got = structs.accept(decimal_struct, {"value": value}).value  # type: ignore[arg-type, union-attr]
        assert (type(got), str(got)) == (type(expected), str(expected)), repr(value)
    # Kept: 1, 1.0, 0, 0.5 and -(2**63) (True is refused); not 0.0, -0.0 nor 2**63, past 64 bits.
    assert structs.REMEMBERED.cache_info().currsize == 5
    base64 = msgspec.defstruct("OnlyBase64", [("value", structs._primitive(fhir_types.Base64BinaryType))])
    attachment = "QUJD" * 10_000
    structs.REMEMBERED.cache_clear()
    got = structs.accept(base64, {"value": attachment}).value  # type: ignore[arg-type, union-attr]
    assert got == TypeAdapter(fhir_types.Base64BinaryType).validate_python(attachment)
    assert structs.REMEMBERED.cache_info().currsize == 0


def test_history_struct_is_one_class_per_variant() -> None:
    assert parse.history_struct() is parse.history_struct(structs.STRICT)
    assert parse.history_struct(structs.PLAIN) is not parse.history_struct()


def test_plain_leaves_out_only_the_string_pattern_it_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    """With another String pattern (fhir_core's, when it allows the empty string), PLAIN checks it as STRICT does."""
    assert typing.get_args(structs._primitive(fhir_types.StringType, structs.PLAIN))[1].pattern is None
    monkeypatch.setattr(fhir_types.String, "allow_empty_str", True)
    meta = typing.get_args(structs._primitive(fhir_types.StringType, structs.PLAIN))[1]
    assert meta.pattern == structs.python_pattern("([ \r\n\t\\S]+)|(^$)")


def test_the_plain_structs_refuse_an_empty_string() -> None:
    data = {"resourceType": "Condition", "subject": {"reference": ""}}
    assert structs.accept(parse.structs(structs.PLAIN)["Condition"], data, plain=True) is None
    assert structs.accept(parse.structs(structs.PLAIN)["Condition"], {**data, "subject": {"reference": "P/1"}},
                          plain=True) is not None


def test_a_lone_surrogate_makes_a_resource_invalid_as_in_fhir_resources() -> None:
    """json.loads (the FHIR client's, the audit's) keeps a `\\ud800` escape; pydantic-core refuses it."""
    admin = json.loads('{"resourceType": "MedicationAdministration", "status": "completed", '
                       '"subject": {"reference": "Patient/p\\ud800"}, "effectiveDateTime": "2025-03-04", '
                       '"medicationCodeableConcept": {"text": "B12"}}')
    assert admin["subject"]["reference"].endswith("\ud800")
    verdict(admin)
    into = parse.Resources()
    assert parse.validate("x", admin, into) is None and len(into.invalid) == 1
    assert parse.validate("x", admin, parse.Resources(), history=True) is None


def test_a_negative_zero_keeps_its_sign_whatever_was_read_before() -> None:
    def dose(value: float) -> Any:
        data = {"resourceType": "MedicationAdministration", "status": "completed",
                "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2025-03-04",
                "medicationCodeableConcept": {"text": "B12"}, "dosage": {"dose": {"value": value}}}
        return structs.accept(parse.structs()["MedicationAdministration"], data).dosage.dose.value  # type: ignore[union-attr]

    assert (str(dose(0.0)), str(dose(-0.0)), str(dose(0.0))) == ("0.0", "-0.0", "0.0")


@pytest.mark.parametrize("value", [1, 0, -0.0, 0.1, 1e-7, 2.5e30, 10**30, 1.0, 3.14159265358979, "1.5", True])
def test_a_decimal_has_the_value_fhir_resources_gives_it(value: Any) -> None:
    data = {"resourceType": "MedicationAdministration", "status": "completed", "subject": {"reference": "Patient/p"},
            "effectiveDateTime": "2025-03-04", "medicationCodeableConcept": {"text": "B12"},
            "dosage": {"dose": {"value": value, "unit": "ug"}}}
    try:
        full = get_fhir_model_class("MedicationAdministration").model_validate(data).dosage.dose.value
    except ValidationError:
        full = None
    quick = structs.accept(parse.structs()["MedicationAdministration"], data)
    assert quick is None or full is not None
    if quick is not None:
        got = quick.dosage.dose.value
        assert type(got) is type(full) and str(got) == str(full)
        assert isinstance(got, decimal.Decimal | int | float)


@pytest.mark.parametrize("entry", [True, "x", {"resource": {}}, 7])
def test_a_bundle_whose_entry_is_not_a_list_is_one_invalid_resource(entry: Any) -> None:
    out = parse.read({"administrations": {"resourceType": "Bundle", "type": "searchset", "entry": entry}})
    assert [(p.where, p.resource_type) for p in out.invalid] == [("administrations", "Bundle")]
    assert out.administrations == []


def test_a_worker_reads_resources_while_the_models_are_still_being_generated() -> None:
    """In a fresh interpreter, as a worker starts: hook calls during the background generation get the
    same answers as after it, invalid resources included (they wait for the models)."""
    script = """
import json, sys, threading
from cds_service.fhir import parse
admin = json.loads(sys.argv[1])
bad = {**admin, "status": 7}
thread = parse.prepare()
results = []
def call():
    into = parse.Resources()
    results.append((parse.validate("x", admin, into) is not None, parse.validate("x", bad, into), len(into.invalid)))
calls = [threading.Thread(target=call) for _ in range(4)]
for t in calls: t.start()
for t in calls: t.join()
thread.join()
print(json.dumps({"results": results, "alive": thread.is_alive(), "models": sorted(parse.models())}))
"""
    admin = next(r for r in CORPUS if r["resourceType"] == "MedicationAdministration" and "contained" not in r)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(admin)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=True)
    out = json.loads(done.stdout)
    assert out["results"] == [[True, None, 1]] * 4
    assert out["alive"] is False and out["models"] == sorted(parse.READ_TYPES | parse.CONTAINED_TYPES)


def test_threads_reading_history_at_once_after_start_up_do_not_crash_the_process() -> None:
    """msgspec builds a type's information on first use, and two threads doing it at once crashed a worker
    (SIGSEGV); prepare() builds it first. Each run races 4 threads on their first administrations."""
    script = """
import json, sys, threading
from cds_service.fhir import parse, structs
admins = json.loads(sys.argv[1])
parse.prepare()
start = threading.Event()
def read():
    start.wait()
    for admin in admins * 20:
        structs.accept(parse.history_struct(structs.PLAIN), admin, plain=True)
        structs.accept(parse.structs(structs.PLAIN)["MedicationAdministration"], admin, plain=True)
        structs.accept(parse.history_struct(), admin)  # STRICT: generated by the background thread meanwhile
        structs.accept(parse.structs()["MedicationAdministration"], admin)
threads = [threading.Thread(target=read) for _ in range(4)]
for thread in threads: thread.start()
sys.setswitchinterval(1e-6)
start.set()
for thread in threads: thread.join()
print("read")
"""
    admins = json.dumps([r for r in CORPUS if r["resourceType"] == "MedicationAdministration"][:10])
    for _ in range(6):  # without the fix about one run in three crashed
        done = subprocess.run([sys.executable, "-c", script, admins], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert (done.returncode, done.stdout.strip()) == (0, "read"), done.stderr[-2000:]


def test_a_required_primitive_given_by_its_extension_only_is_left_to_pydantic() -> None:
    """The Structs require a required primitive's own value (msgspec checks it in C); FHIR also takes its
    `_status` extension instead: that resource goes to the pydantic pass, which accepts it as fhir.resources."""
    admin = {"resourceType": "MedicationAdministration", "id": "a1", "subject": {"reference": "Patient/p"},
             "effectiveDateTime": "2025-03-04", "medicationCodeableConcept": {"text": "B12"},
             "_status": {"extension": [{"url": "https://example.org/status", "valueString": "given"}]}}
    assert verdict(admin)[0] is True
    assert structs.accept(parse.structs()["MedicationAdministration"], admin) is None
    into = parse.Resources()
    assert parse.validate("x", admin, into) is not None and not into.invalid
    for status in (None, {"status": None}):  # absent, or null, with no extension: refused by both
        broken = {k: v for k, v in admin.items() if k != "_status"} | (status or {})
        assert verdict(broken)[0] is False
        assert parse.validate("x", broken, parse.Resources()) is None


def test_a_value_that_breaks_a_validator_otherwise_than_by_a_validation_error_makes_the_resource_invalid() -> None:
    """fhir_core's url validator raises AttributeError on a number: invalid-resource, not a crash."""
    admin = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
             "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2025-03-04",
             "medicationCodeableConcept": {"text": "B12"},
             "extension": [{"url": "https://example.org/x", "valueUrl": 5}]}
    for plain_text in (False, True):
        into = parse.Resources()
        assert parse.validate("administrations", admin, into, plain=plain_text) is None
        assert [(i.resource_type, i.resource_id) for i in into.invalid] == [("MedicationAdministration", "a1")]


@pytest.mark.parametrize("odd", [{"resourceType": ["Encounter"]}, {"resourceType": {"a": 1}},
                                 {"resourceType": "Bundle", "entry": [{"search": "x", "resource": {}}]},
                                 {"resourceType": "Bundle", "entry": [{"search": [], "resource": 5}]}])
def test_an_odd_resource_type_or_bundle_entry_is_read_without_a_crash(odd: dict[str, Any]) -> None:
    resources = parse.read({"x": odd})
    assert not resources.administrations and not resources.conditions
