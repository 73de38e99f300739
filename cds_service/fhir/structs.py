"""FHIR R4 validation at msgspec speed: a first pass that only accepts, generated from the fhir.resources R4B models.

msgspec reads a resource's JSON value into Structs in C, about ten times faster than pydantic-core builds
models. Each Struct mirrors one fhir.resources class, as `fhir.fast`'s models do: the same elements,
aliases, cardinalities and model rules (unknown elements refused, `resourceType` checked, one type per
choice element `nnn[x]`, a `_nnn` object that says something, no null in a list of complex elements).
A required primitive (Narrative's `status` and `div`, a resource's `status`) is a required, non-null
field, checked by msgspec in C: FHIR also lets its `_nnn` extension stand in for it, a case rare enough
to be left to pydantic with the other refusals. The primitives:

- a string, id, uri or markdown is a str under fhir_core's own pattern and length limits.
  pydantic-core reads a pattern with the Rust regex engine, this pass with Python's `re`: `$` is written
  `\\Z` (end of text, as Rust's `$`), and Python counts more characters as whitespace than Rust does
  (U+001C to U+001F), so a string that `re` accepts, Rust accepts too (lone surrogates aside: below);
- a code or oid (a pattern of its own and few distinct values: statuses, systems) goes through fhir_core's
  type by pydantic, as below, and is remembered: a remembered value costs less than msgspec's call to `re`
  (an id, nearly always new, stays with `re`);
- an integer is an int within fhir_core's bounds, a boolean a bool, xhtml a str (pydantic ignores its
  marker);
- a primitive that fhir_core converts in Python (decimal, date, dateTime, instant, time, url,
  base64Binary, uuid) goes through the very fhir_core type, by pydantic, so its value is the same.

Converted values are remembered (`REMEMBERED`, below): msgspec asks for them through a C cache, so a value
seen before costs no Python call at all (a typical hook call has 79: 57 codes, 20 dates and instants,
2 decimals).

A string holding a lone surrogate (which `json.loads` lets through), an integer beyond 64 bits and
nesting past 255 levels are left to pydantic before all this: see `accept`. The PLAIN variant of the
Structs, for a hook call's own plain JSON text, leaves out the String pattern and that first check: see
`Variant` and `accept`.

The pass is strict where pydantic is lax: a number written as a string, an integer as a float, an
element given by its Python name. Whatever the pass refuses, the caller gives to `fhir.fast`, which
decides and describes the errors, so the verdict is always fhir.resources'. tests/unit/
test_fast_validation.py holds the pass to fhir.resources: whatever it accepts, fhir.resources accepts,
with the same values. `partial` derives a Struct that reads some elements only (another encounter's
administration, for the frequency rule).
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import re
import threading
import types
import typing
from collections.abc import Iterable
from typing import Any, ClassVar

import annotated_types
import msgspec
import orjson
from fhir_core import types as fhir_types
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from pydantic import TypeAdapter

from cds_service.fhir import fast

__all__ = ["PLAIN", "STRICT", "FhirStruct", "Variant", "accept", "partial", "struct_for", "structs"]

CONVERTED_CACHE = 8192  # converted values remembered, of every type together (see REMEMBERED)
REMEMBERED_LENGTH = 64  # ... a string of this length at most, so that what is remembered stays small
# fhir_core types with a pattern of their own whose values repeat: read by pydantic and remembered (see above).
REMEMBERED_PATTERNS = (fhir_types.Code, fhir_types.Oid)


class FhirStruct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """The base of every generated Struct: read like a fhir.resources model, by element name."""

    __resource_type__: ClassVar[str] = ""
    __choices__: ClassVar[fast.Choices] = ()
    __required_primitives__: ClassVar[fast.RequiredPrimitives] = ()
    __before__: ClassVar[tuple[Any, ...]] = ()  # fhir.resources' own before-validators
    __aliases__: ClassVar[tuple[tuple[str, str], ...]] = ()  # (name, alias) of each element, for them

    @classmethod
    def get_resource_type(cls) -> str:
        return cls.__resource_type__


def _post_init(self: FhirStruct) -> None:
    """The model rules of fhir_core, as the pydantic pass checks them, for the classes that have them."""
    for _loc, _kind, message, values in fast.broken_rules(self):
        raise ValueError(message.format(**values))
    if self.__before__:
        values = {alias: getattr(self, name) for name, alias in self.__aliases__ if getattr(self, name) is not None}
        for validator in self.__before__:
            validator(values)  # raises a PydanticCustomError, a ValueError


def _broken(self: FhirStruct) -> None:
    """A generated check found a rule broken: say which, as _post_init does (were they ever to disagree,
    the Struct is refused all the same, and pydantic decides)."""
    _post_init(self)
    raise ValueError(f"{type(self).__name__}: the generated rule check disagrees with fast.broken_rules")


def rules_check(choices: fast.Choices, required: fast.RequiredPrimitives, before: bool) -> Any:
    """A __post_init__ that checks these rules with straight-line code (a few attribute reads and
    comparisons, a fifth of _post_init's loops), and calls _post_init, for its message, when one is broken."""
    names = {name for _prefix, fields, _req in choices for name in fields}
    names |= {name for name, _alias, _ext in required} | {ext for _name, _alias, ext in required if ext}
    if any(not name.isidentifier() or keyword.iskeyword(name) for name in names):
        return _post_init  # none in R4B: every element name is a Python identifier
    lines = ["def __post_init__(self):"]
    for _prefix, fields, req in choices:
        given = " + ".join(f"(self.{name} is not None)" for name in fields)
        lines.append(f"    if ({given}) {'!=' if req else '>'} 1: _broken(self)")
    for name, _alias, ext in required:
        sibling = f" and not getattr(self.{ext}, 'extension', None)" if ext else ""
        lines.append(f"    if self.{name} is None{sibling}: _broken(self)")
    if before:
        lines.append("    _post_init(self)")
    namespace: dict[str, Any] = {"_broken": _broken, "_post_init": _post_init}
    exec("\n".join(lines), namespace)  # noqa: S102 - the source is built above from field names only
    return namespace["__post_init__"]


class AnyValue(type):
    """msgspec checks that a hook's value is an instance of the declared type: for these, every value is one.

    The check is `type`, which returns the value's class, never false: a C call where a Python method would
    cost a frame per value. (A builtin is no descriptor, so it gets the value alone, not the class first.)"""

    __instancecheck__ = type


class Converted(metaclass=AnyValue):
    """A primitive fhir_core converts in Python; its value is whatever fhir_core returns."""

    convert: ClassVar[Any]


class NotRemembered(ValueError):
    """A value the memo keeps out; msgspec reports it as a ValidationError, and `accept` converts again
    without the memo."""


def _converted_value(kind: type, value: Any) -> Any:
    """dec_hook: fhir_core's conversion of a value read as a Converted type. A validator of fhir_core that
    fails otherwise than by a ValueError on a value of the wrong kind (an AttributeError for a number given
    as a url) fails by a ValueError here, which msgspec reports: the pydantic pass then decides."""
    convert = getattr(kind, "convert", None)
    if convert is None:
        raise NotImplementedError(kind)
    try:
        return convert(value)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{kind.__name__}: {type(exc).__name__}") from None


def _remembered_value(kind: type, value: Any) -> Any:
    """What REMEMBERED calls for a value it has not seen: the conversion, for a value it may keep.

    It keeps a value that equals only itself and stays small: a str of REMEMBERED_LENGTH characters at
    most, an int of 64 bits, a float other than 0.0 (the cache would give -0.0 the Decimal of 0.0, which
    equals it), a bool. Anything else (an attachment's base64 text, a long URL) is refused, so that
    `accept` converts it without the memo: the memo never holds more than CONVERTED_CACHE small values."""
    kept = type(value)
    if ((kept is str and len(value) <= REMEMBERED_LENGTH) or kept is bool
            or (kept is int and -(2**63) <= value < 2**63) or (kept is float and value != 0.0 and value == value)):
        return _converted_value(kind, value)
    raise NotRemembered(kind.__name__)


# dec_hook of the first conversion: (type, value) -> fhir_core's value, remembered in C (functools'
# lru_cache), so that a value seen before costs no Python call. typed=True keeps 1, 1.0 and True apart.
# An exception is never remembered: an invalid value goes to pydantic each time.
REMEMBERED = functools.lru_cache(maxsize=CONVERTED_CACHE, typed=True)(_remembered_value)


@functools.cache
def _converted(annotation: Any) -> type[Converted]:
    """One Converted subclass per fhir_core primitive type, validating and converting as pydantic does."""
    adapter = TypeAdapter(annotation)
    args = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Annotated else (annotation,)
    visit = next((getattr(a, "__visit_name__", "") for a in args[1:] if hasattr(a, "__visit_name__")), "")
    name = f"Converted{visit or getattr(args[0], '__name__', 'Value')}"
    kind: type[Converted] = type(name, (Converted,), {"convert": staticmethod(adapter.validate_python),
                                                      "__module__": __name__})
    return kind


def python_pattern(pattern: str) -> str:
    """A pydantic-core (Rust) pattern for Python's `re`: `$` is the end of the text, `\\Z` in Python."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def inert(extra: Any) -> bool:
    """Metadata that pydantic ignores, as it ignores fhir_core's Xhtml marker: not a constraint, no schema."""
    return not (
        isinstance(extra, annotated_types.BaseMetadata | annotated_types.GroupedMetadata)
        or any(hasattr(extra, hook) for hook in ("__get_pydantic_core_schema__", "__get_pydantic_json_schema__"))
        or callable(extra)
    )


def always_matches(pattern: str) -> bool:
    """A pattern that matches the empty string with no assertion in it matches at the start of any text
    (fhir_core's uri and markdown): no need to run it."""
    return re.fullmatch(pattern, "") is not None and re.search(r"[\^$]|\\[AZbB1-9]|\(\?", pattern) is None


@dataclasses.dataclass(frozen=True, eq=False)  # two variants only, each one object: hashed by identity, in C
class Variant:
    """A family of generated Structs: its class names start with `prefix`.

    STRICT checks every pattern. PLAIN is for JSON text that `jsontext.loads_plain` found plain (read by
    orjson, 255 levels deep at most, no whitespace in it but space, tab, CR and LF): there fhir_core's
    String pattern, `[ \\r\\n\\t\\S]+`, which refuses only a text that is empty or made of other
    whitespace, is min_length=1, checked in C instead of by a call to `re` per string (a quarter of the
    pass's time)."""

    prefix: str
    string_pattern: bool

    @property
    def any_resource(self) -> str:
        return f"{self.prefix}AnyResource"


STRICT = Variant("Struct", string_pattern=True)
PLAIN = Variant("PlainStruct", string_pattern=False)
STRING_PATTERN = "[ \r\n\t\\S]+"  # fhir_core's String: PLAIN leaves out this pattern, and no other


def _primitive(annotation: Any, variant: Variant = STRICT) -> Any:
    """A fhir_core primitive: a constrained str or int when msgspec can check it, else Converted."""
    base, *extras = typing.get_args(annotation)
    meta: dict[str, Any] = {}
    for extra in extras:
        if base in (str, int) and inert(extra):
            continue
        if base not in (str, int) or not isinstance(extra, annotated_types.GroupedMetadata):
            return _converted(annotation)
        plain_string = type(extra) is fhir_types.String and not variant.string_pattern
        for part in extra:
            if isinstance(part, annotated_types.MinLen):
                meta["min_length"] = max(part.min_length, meta.get("min_length", 0))
            elif isinstance(part, annotated_types.MaxLen):
                meta["max_length"] = part.max_length
            elif isinstance(part, annotated_types.Ge):
                meta["ge"] = part.ge
            elif isinstance(part, annotated_types.Le):
                meta["le"] = part.le
            elif type(part).__name__ == "_PydanticGeneralMetadata" and set(vars(part)) == {"pattern"}:
                if plain_string and vars(part)["pattern"] == STRING_PATTERN:
                    meta["min_length"] = max(1, meta.get("min_length", 0))
                elif type(extra) in REMEMBERED_PATTERNS and not always_matches(vars(part)["pattern"]):
                    return _converted(annotation)  # pydantic's verdict, remembered
                elif not always_matches(vars(part)["pattern"]):
                    meta["pattern"] = python_pattern(vars(part)["pattern"])
            else:
                return _converted(annotation)
    return typing.Annotated[base, msgspec.Meta(**meta)] if meta else base


def struct_for(cls: type[FHIRAbstractModel], variant: Variant = STRICT) -> type[FhirStruct]:
    """The generated Struct of a fhir.resources class (built with every class it nests, then cached)."""
    struct: type[FhirStruct] = fast.generate_closure(
        cls, functools.partial(_name, variant), functools.partial(_generate, variant), globals()
    )
    return struct


def _name(variant: Variant, klass: type[FHIRAbstractModel]) -> str:
    return f"{variant.prefix}{klass.__name__}"


def _generate(
    variant: Variant, cls: type[FHIRAbstractModel], pending: list[type[FHIRAbstractModel]]
) -> type[FhirStruct]:
    choices, required = fast.model_rules(cls)
    present = {name for name, _alias, _ext in required}
    fields: list[tuple[str, Any, Any]] = []
    aliases = []
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        aliases.append((name, alias))
        default = msgspec.NODEFAULT if info.is_required() else info.default
        if isinstance(default, list | dict):
            raise NotImplementedError(f"{cls.__name__}.{name}: a mutable default")  # none in R4B
        annotation = _convert(info.annotation, pending, variant)
        if name in present:  # a required primitive: required here, its value itself (see the module's text)
            annotation, default = without_none(annotation), msgspec.NODEFAULT
        fields.append((name, annotation, msgspec.field(default=default, name=alias)))
    validators = cls.__pydantic_decorators__.model_validators
    own = {key: d for key, d in validators.items() if key not in fast.COMMON_VALIDATORS}
    for key, decorator in own.items():
        if decorator.info.mode != "before":  # none in R4B; a new kind must be ported, not misapplied
            raise NotImplementedError(f"{cls.__name__}.{key}: a {decorator.info.mode} model validator")
    before = tuple(decorator.func for decorator in own.values())
    namespace: dict[str, Any] = {
        "__resource_type__": cls.__resource_type__,
        "__choices__": choices,
        "__required_primitives__": required,
        "__before__": before,
        "__aliases__": tuple(aliases) if before else (),
    }
    if choices or before:
        namespace["__post_init__"] = rules_check(choices, (), bool(before))
    options: dict[str, Any] = {}
    if cls.has_resource_base():
        options = {"tag_field": "resourceType", "tag": cls.__resource_type__}
    struct: type[FhirStruct] = msgspec.defstruct(  # type: ignore[assignment]  # its base is FhirStruct
        _name(variant, cls), fields, bases=(FhirStruct,), module=__name__, namespace=namespace,
        kw_only=True, forbid_unknown_fields=True, gc=False, **options,
    )
    if cls.has_resource_base():
        RESOURCES.setdefault(variant, {})[cls.__resource_type__] = struct
    return struct


def without_none(annotation: Any) -> Any:
    """The annotation less None (an Optional's other members)."""
    members = tuple(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType) or not members:
        return annotation
    return members[0] if len(members) == 1 else typing.Union[members]  # noqa: UP007 - from a tuple


# The generated resource Structs of each variant, by resourceType.
RESOURCES: dict[Variant, dict[str, type[FhirStruct]]] = {}


def _convert(annotation: Any, pending: list[type[FHIRAbstractModel]], variant: Variant) -> Any:
    """An annotation of fhir.resources for msgspec: nested elements by their Structs, primitives as above."""
    if isinstance(annotation, type) and issubclass(annotation, FhirBase) and hasattr(annotation, "get_model_klass"):
        klass = annotation.get_model_klass()
        if klass.__name__ in {"Resource", "DomainResource"}:
            # A contained resource: one of the generated ones of this variant, by type.
            return typing.ForwardRef(variant.any_resource)
        pending.append(klass)
        return typing.ForwardRef(_name(variant, klass))
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _primitive(annotation, variant)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_convert(a, pending, variant) for a in args)]  # noqa: UP007 - from a tuple
    if origin is list:
        return list[_convert(args[0], pending, variant)]  # type: ignore[misc]
    if annotation in (str, int, bool, type(None)):
        return annotation
    return _converted(annotation)  # none in R4B beyond the above


GENERATING = threading.Lock()  # the Structs go into this module's globals: one generation at a time


@functools.cache
def structs(resource_types: frozenset[str], variant: Variant = STRICT) -> dict[str, type[FhirStruct]]:
    """The Structs of these resource types, and what they nest; a contained resource is one of them."""
    with GENERATING:
        return _structs(resource_types, variant)


def _structs(resource_types: frozenset[str], variant: Variant) -> dict[str, type[FhirStruct]]:
    from fhir.resources.R4B import get_fhir_model_class

    out = {rtype: struct_for(get_fhir_model_class(rtype), variant) for rtype in sorted(resource_types)}
    members = tuple(RESOURCES[variant].values())
    globals()[variant.any_resource] = typing.Union[members] if len(members) > 1 else members[0]  # noqa: UP007
    for struct in out.values():
        ready(struct)
    return out


def ready(struct: type[FhirStruct]) -> type[FhirStruct]:
    """The Struct with msgspec's type information built (with that of every Struct it nests).

    msgspec builds it on a type's first use, and two threads doing that at once can crash the process
    (a segmentation fault, reproduced with 4 threads: 9 runs in 30). So it is built here, at start."""
    accept(struct, {})
    return struct


def partial(struct: type[FhirStruct], elements: Iterable[str]) -> type[FhirStruct]:
    """A Struct of the same resource that reads only these elements (by JSON name) and passes over the others
    in C, unchecked, where `struct` refuses an unknown one: what a caller that reads only them validates.

    Its other elements read as None, as an absent element does. Its rules are those among these elements;
    a choice element must be wholly in or wholly out. Built under GENERATING, as the Structs are: a worker's
    background thread may build one while a request thread asks for it."""
    with GENERATING:
        return _partial(struct, elements)


def _partial(struct: type[FhirStruct], elements: Iterable[str]) -> type[FhirStruct]:
    wanted = set(elements)
    fields = [f for f in msgspec.structs.fields(struct) if f.encode_name in wanted]
    names = {f.name for f in fields}
    for _prefix, choice, _required in struct.__choices__:
        if names.intersection(choice) and not names.issuperset(choice):
            raise ValueError(f"{struct.__name__}: choice {choice} is not wholly among {sorted(wanted)}")
    choices = tuple(c for c in struct.__choices__ if names.issuperset(c[1]))
    for name, alias, ext in struct.__required_primitives__:
        parts = {name, ext} - {None}
        if names & parts and not names >= parts:
            raise ValueError(f"{struct.__name__}: required {alias} and its _{alias} are not both among the elements")
    required = tuple(r for r in struct.__required_primitives__ if r[0] in names)
    skipped = frozenset(f.name for f in msgspec.structs.fields(struct)) - names

    def absent(self: FhirStruct, name: str) -> None:
        if name in skipped:
            return None
        raise AttributeError(name)

    namespace: dict[str, Any] = {
        "__resource_type__": struct.__resource_type__, "__choices__": choices, "__required_primitives__": required,
        "__getattr__": absent,
    }
    if choices or required:
        namespace["__post_init__"] = rules_check(choices, required, before=False)
    options: dict[str, Any] = {}
    if struct.__resource_type__:
        options = {"tag_field": "resourceType", "tag": struct.__resource_type__}
    partial_struct: type[FhirStruct] = msgspec.defstruct(  # type: ignore[assignment]  # its base is FhirStruct
        f"{struct.__name__}Partial", [
            (f.name, f.type, msgspec.field(default=f.default, name=f.encode_name))
            if f.default is not msgspec.NODEFAULT else (f.name, f.type, msgspec.field(name=f.encode_name))
            for f in fields
        ],
        bases=(FhirStruct,), module=__name__, namespace=namespace,
        kw_only=True, forbid_unknown_fields=False, gc=False, **options,
    )
    return ready(partial_struct)


def accept(struct: type[FhirStruct], data: Any, *, plain: bool = False) -> FhirStruct | None:
    """The resource as a Struct, or None when this pass does not accept it (then fhir.fast decides).

    First orjson writes it out (about 1 µs a resource) and so refuses what pydantic-core refuses in any
    string and `re` would let through, a lone surrogate (json.loads keeps `\\ud800` escapes); and
    with it an integer beyond 64 bits and nesting past 255 levels, which pydantic then judges.
    plain=True says the data was read from text that `jsontext.loads_plain` found plain (a PLAIN Struct's
    condition): orjson read it, at most 255 levels deep, so none of these can be in it, and the check is
    skipped."""
    try:
        if not plain:
            orjson.dumps(data)
        try:
            return msgspec.convert(data, struct, strict=True, dec_hook=REMEMBERED)
        except msgspec.ValidationError:  # invalid, or a value the memo keeps out: once more without it
            return msgspec.convert(data, struct, strict=True, dec_hook=_converted_value)
    except (orjson.JSONEncodeError, msgspec.ValidationError, RecursionError):
        return None
