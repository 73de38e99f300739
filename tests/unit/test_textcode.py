"""Card text compiled to Python (cds_service.textcode) is Jinja's text, for every template of cards/."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from cds_service.cards import Text, escape_markdown, load_templates
from cds_service.errors import CDSError
from cds_service.service import Call
from tests.conftest import FIXTURES

PLAIN = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
MARKDOWN = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=escape_markdown)


def texts() -> list[tuple[str, Text]]:
    out = []
    for rule, template in sorted(load_templates().items()):
        out += [(f"{rule}/{part}", text) for part, text in
                (("summary", template.summary), ("detail", template.detail), ("suggestion", template.suggestion))
                if text is not None]
    return out


def jinja(text: Text, variables: dict[str, Any]) -> tuple[str, str | None]:
    """(text, None) as Jinja renders it, or ("", the exception's class) when it raises."""
    try:
        return text.template.render(variables), None
    except Exception as exc:  # noqa: BLE001 - compared with what the compiled text raises
        return "", type(exc).__name__


def compiled(text: Text, variables: dict[str, Any]) -> tuple[str, str | None]:
    assert text.code is not None
    try:
        return text.code(variables), None
    except Exception as exc:  # noqa: BLE001 - compared with what Jinja raises
        return "", type(exc).__name__


def test_nearly_every_card_text_is_compiled() -> None:
    left = sorted(name for name, text in texts() if text.code is None)
    assert left == ["route-missing/detail"]  # it reads `loop.last`: Jinja renders it
    assert len(texts()) > 60


def test_the_scenarios_cards_have_the_same_text_as_jinja_gives(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[tuple[Text, dict[str, Any]]] = []
    render = Text.render

    def recording(self: Text, variables: dict[str, Any]) -> str:
        rendered.append((self, dict(variables)))
        return render(self, variables)

    monkeypatch.setattr(Text, "render", recording)
    rt = app.extensions["cds"]
    for path in sorted(FIXTURES.glob("*.json")):  # the scenarios, and real hook calls
        data = json.loads(path.read_text(encoding="utf-8"))
        body = data.get("request", data)
        service = next((s for s in rt.services.values() if s.hook == body.get("hook")), None)
        if service is not None:
            with contextlib.suppress(CDSError):  # a call that needs the EHR's FHIR server renders nothing here
                rt.answer(Call(service.id), lambda body=body: (body, False), service, record=False)
    compiled_ones = [(text, variables) for text, variables in rendered if text.code is not None]
    assert len(compiled_ones) >= 20  # the cards of the scenarios and of the real calls
    for text, variables in compiled_ones:
        assert compiled(text, variables) == jinja(text, variables)


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2000), st.sampled_from(["", "J3420", "1,000 mcg", "a*b_[c]`|<x>~\\"]),
    st.text(max_size=12), st.lists(st.sampled_from(["JZ", "25", "59"]), max_size=3),
    st.lists(st.fixed_dictionaries({"code": st.sampled_from(["96372", "J3420"]), "units": st.integers(0, 9),
                                    "modifiers": st.lists(st.sampled_from(["JZ", "25"]), max_size=2),
                                    "meaning": st.text(max_size=8)}), max_size=3),
)


@pytest.mark.parametrize(("name", "text"), [t for t in texts() if t[1].code is not None], ids=lambda v: str(v)[:40])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_variables_give_jinja_text_or_jinja_error(name: str, text: Text, data: st.DataObject) -> None:
    variables = {key: data.draw(VALUES, label=key) for key in sorted(text.names)
                 if data.draw(st.integers(0, 9), label=f"{key} given") > 0}  # now and then a name is not given
    assert compiled(text, variables) == jinja(text, variables), name


@pytest.mark.parametrize("source", [
    "{% for c in xs %}{{ loop.index }}{% endfor %}",  # loop
    "{{ f(1) }}",  # a call
    "{% set x = 1 %}{{ x }}",  # an assignment
    "{{ xs | map('upper') | list }}",  # a filter outside FILTERS
    "{{ range(3) | list }}",  # a global of Jinja's
    "{{ xs[0] }}",  # an item
    "{{ a ~ b }}",  # concatenation
    "{{ 1e999 }}{{ a }}",  # a number Python writes as no literal (inf)
])
def test_what_is_not_written_here_is_left_to_jinja(source: str) -> None:
    text = Text(PLAIN, source)
    assert text.code is None
    assert text.render({"xs": ["a"], "f": str, "a": "x", "b": "y"}) == PLAIN.from_string(source).render(
        {"xs": ["a"], "f": str, "a": "x", "b": "y"})


@pytest.mark.parametrize(("env", "source", "variables", "expected"), [
    (MARKDOWN, "**{{ drug }}**{% if n > 1 %}s{% elif n == 1 %}1{% else %}0{% endif %}", {"drug": "a*b", "n": 1},
     "**a\\*b**1"),
    (PLAIN, "{{ xs | length }} item{{ 's' if xs | length > 1 }}", {"xs": [1]}, "1 item"),
    (PLAIN, "{% if x is defined %}{{ x }}{% else %}none{% endif %}", {}, "none"),
    (PLAIN, "{% for c in cs %}{{ c.code }}-{{ c.modifiers | join('-') }};{% endfor %}{{ c is defined }}",
     {"cs": [{"code": "J3420", "modifiers": ["JZ"]}]}, "J3420-JZ;False"),
    (PLAIN, "{{ (a or b) and not c }}", {"a": "", "b": "y", "c": False}, "True"),
    (PLAIN, "{{ t | replace('-', ' ') | upper }}", {"t": "a-b"}, "A B"),
])
def test_compiled_text_is_jinja_text(env: SandboxedEnvironment, source: str, variables: dict[str, Any],
                                     expected: str) -> None:
    text = Text(env, source)
    assert text.code is not None
    assert text.render(dict(variables)) == env.from_string(source).render(variables) == expected


def test_a_name_not_given_and_the_sandbox_raise_as_in_jinja() -> None:
    with pytest.raises(UndefinedError):
        Text(PLAIN, "{{ missing }}").render({})
    with pytest.raises(UndefinedError):
        Text(PLAIN, "{% for c in cs %}{{ c.nope }}{% endfor %}").render({"cs": [{}]})
    text = Text(PLAIN, "{{ x.__class__.__mro__ }}")
    assert text.code is not None
    with pytest.raises(SecurityError):
        text.render({"x": 1})
