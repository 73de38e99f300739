"""FHIR R4 validation at pydantic-core speed, generated from the fhir.resources R4B models.

fhir.resources validates every nested element in Python: each complex element goes through a
wrapping validator that calls `model_validate` again, plus a before- and an after-validator per
model. That costs about 0.15 ms per resource, which is most of a hook call. This module derives,
once per class, a plain pydantic model with the same fields, aliases, cardinalities and primitive
types (the very `fhir_core` annotations, so primitives validate and convert identically), nested
through the generated models so that pydantic-core validates a whole resource in one call. The
model-level rules of `fhir_core.fhirabstractmodel.FHIRAbstractModel` are kept:

- unknown elements are refused (`extra="forbid"`) and `resourceType` must match when given;
- a null inside a list of complex elements is refused (here by the list's item type itself);
- a choice element `nnn[x]` takes one type at most, and one when the element is required;
- a required primitive is present, or its `_nnn` extension sibling carries an extension.

A `contained` resource is validated by the generated model of its type when there is one (the types
the service reads), and by fhir.resources itself otherwise, as its type is only known at run time.

tests/unit/test_fast_validation.py holds this module to fhir.resources on every example in
../shared/reference and on mutations of them: the same verdict, and the same values when valid.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Literal

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["FastModel", "ValidationError", "model_for"]


Choices = tuple[tuple[str, tuple[str, ...], bool], ...]  # (prefix, fields, required)
RequiredPrimitives = tuple[tuple[str, str, str | None], ...]  # (field, alias, the `_field` sibling's field)


class FastModel(BaseModel):
    """The base of every generated model: read like a fhir.resources model, by element name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    __resource_type__: typing.ClassVar[str] = ""
    __choices__: typing.ClassVar[Choices] = ()
    __required_primitives__: typing.ClassVar[RequiredPrimitives] = ()

    @classmethod
    def get_resource_type(cls) -> str:
        return cls.__resource_type__


BrokenRule = tuple[str, str, str, dict[str, Any]]  # (loc, error type, message template, its values)


def broken_rules(obj: Any) -> typing.Iterator[BrokenRule]:
    """The choice and required-primitive rules of fhir_core's after-validator that obj breaks, read from
    its class's __choices__ and __required_primitives__ (a generated model or Struct)."""
    for prefix, fields, required in obj.__choices__:
        given = [name for name in fields if getattr(obj, name) is not None]
        if len(given) > 1 or (required and not given):
            yield (prefix, "value_error", "{prefix}[x]: expected one of {fields}, got {n}",
                   {"prefix": prefix, "fields": ", ".join(fields), "n": len(given)})
    for name, alias, ext in obj.__required_primitives__:
        if getattr(obj, name) is not None:
            continue
        sibling = getattr(obj, ext) if ext else None
        if sibling is None or not getattr(sibling, "extension", None):
            yield (alias, "model_field_validation.missing", "Value for the field '{field_name}' is required.",
                   {"field_name": alias})


def _check_rules(self: FastModel) -> FastModel:
    """The after-validator of fhir_core, for the classes that have choices or required primitives."""
    errors: list[InitErrorDetails] = [
        {"type": PydanticCustomError(kind, message, values), "loc": (loc,), "input": None}
        for loc, kind, message, values in broken_rules(self)
    ]
    if errors:
        raise ValidationError.from_exception_data(type(self).__name__, errors)
    return self


@functools.cache
def model_for(cls: type[FHIRAbstractModel]) -> type[FastModel]:
    """The generated model of a fhir.resources class, with every model it nests (built once, then cached)."""
    model: type[FastModel] = generate_closure(cls, _name, _generate, globals())
    model.model_rebuild()
    return model


Generate = typing.Callable[[type[FHIRAbstractModel], list[type[FHIRAbstractModel]]], Any]


def generate_closure(
    cls: type[FHIRAbstractModel], name: typing.Callable[[type], str], generate: Generate, namespace: dict[str, Any]
) -> Any:
    """Generate the class for cls and for every class it nests (which `generate` appends to its pending list),
    each under its name in namespace, where the annotations of the others find it."""
    pending = [cls]
    while pending:
        klass = pending.pop()
        if name(klass) not in namespace:
            namespace[name(klass)] = generate(klass, pending)
    return namespace[name(cls)]


def _name(klass: type[FHIRAbstractModel]) -> str:
    return f"Fast{klass.__name__}"  # class names are unique across fhir.resources.R4B


def model_rules(cls: type[FHIRAbstractModel]) -> tuple[Choices, RequiredPrimitives]:
    """The choice elements and the required primitives of a class, as fhir_core's after-validator reads them."""
    probe = cls.model_construct()
    choices = tuple(
        (prefix, tuple(names), bool((cls.model_fields[names[0]].json_schema_extra or {}).get("one_of_many_required")))  # type: ignore[union-attr]
        for prefix, names in probe.get_one_of_many_fields().items()
    )
    aliases = {info.alias or name: name for name, info in cls.model_fields.items()}
    required = tuple((aliases.get(alias, alias), alias, ext) for alias, ext in probe.get_required_fields())
    return choices, required


def _generate(cls: type[FHIRAbstractModel], pending: list[type[FHIRAbstractModel]]) -> type[FastModel]:
    """One generated model; the classes it nests are appended to `pending` and referred to by name."""
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation = _convert(info.annotation, pending)
        default = ... if info.is_required() else info.default
        fields[name] = (annotation, Field(default, alias=info.alias or name))
    resource_type = cls.__resource_type__
    fields["resource_type"] = (Literal[resource_type] | None, Field(None, alias="resourceType"))  # type: ignore[valid-type]
    choices, required = model_rules(cls)
    validators: dict[str, Any] = {}
    if choices or required:
        validators["check_rules"] = model_validator(mode="after")(_check_rules)
    validators.update(_own_validators(cls))
    model: type[FastModel] = create_model(  # type: ignore[call-overload]
        _name(cls),
        __base__=FastModel,
        __validators__=validators,
        __module__=__name__,
        **fields,
    )
    model.__resource_type__ = resource_type
    if cls.has_resource_base():
        RESOURCES[resource_type] = model
    model.__choices__ = choices
    model.__required_primitives__ = required
    return model


RESOURCES: dict[str, type[FastModel]] = {}  # the generated resource models, by resourceType
COMMON_VALIDATORS = {"reject_null_complex_elements", "validate_after_model_construction"}  # done above


def _own_validators(cls: type[FHIRAbstractModel]) -> dict[str, Any]:
    """The model validators a class declares beyond the common ones (FHIRPrimitiveExtension's: a `_field`
    object needs an id, an extension or a comment), called as the class itself calls them."""
    out = {}
    for name, decorator in cls.__pydantic_decorators__.model_validators.items():
        if name in COMMON_VALIDATORS:
            continue
        if decorator.info.mode != "before":  # none in R4B; a new kind must be ported, not dropped
            raise NotImplementedError(f"{cls.__name__}.{name}: a {decorator.info.mode} model validator")
        bound = decorator.func  # a classmethod of the original class, already bound to it

        def before(_cls: type, data: Any, bound: Any = bound) -> Any:
            return bound(data) if isinstance(data, dict) else data

        out[name] = model_validator(mode="before")(classmethod(before))  # type: ignore[arg-type]
    return out


def _contained(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One contained resource: by its generated model when there is one, else as fhir.resources reads it.

    fhir.resources reads a dict by the class its resourceType names, as the generated model does; its lazy
    type lets a null through, which in a list of resources has no meaning."""
    if value is None:
        raise ValueError("None is not allowed as an element of contained")
    if isinstance(value, dict):
        model = RESOURCES.get(value.get("resourceType"))  # type: ignore[arg-type]
        if model is not None:
            return model.model_validate(value)
    return handler(value)


def _convert(annotation: Any, pending: list[type[FHIRAbstractModel]]) -> Any:
    """An annotation of fhir.resources with every nested FHIR element type swapped for its generated model."""
    if isinstance(annotation, type) and issubclass(annotation, FhirBase) and hasattr(annotation, "get_model_klass"):
        klass = annotation.get_model_klass()
        if klass.__name__ in {"Resource", "DomainResource"}:
            return typing.Annotated[annotation, WrapValidator(_contained)]
        pending.append(klass)
        return typing.ForwardRef(_name(klass))
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return annotation  # a FHIR primitive: the fhir_core type itself
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_convert(a, pending) for a in args)]  # noqa: UP007 - built from a tuple
    if origin is list:
        return list[_convert(args[0], pending)]  # type: ignore[misc]
    return annotation
