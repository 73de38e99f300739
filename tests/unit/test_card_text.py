"""A card's texts render as Jinja renders them (cds_service.cards.Text), with only the variables they read."""

from __future__ import annotations

import pytest
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from cds_service.cards import Text, escape_markdown, load_templates

PLAIN = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
MARKDOWN = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=escape_markdown)


@pytest.mark.parametrize(("env", "source", "variables", "expected"), [
    (PLAIN, "Bill {{ lines }}{% if drug %} of {{ drug }}{% endif %}", {"lines": "96372 x1", "drug": "B12"},
     "Bill 96372 x1 of B12"),
    (PLAIN, "{% for c in charges %}{{ c.code }}x{{ c.units }};{% endfor %}",
     {"charges": [{"code": "J3420", "units": 2}]}, "J3420x2;"),
    (MARKDOWN, "**{{ drug }}**", {"drug": "a*b_[c]"}, "**a\\*b\\_\\[c\\]**"),
    (PLAIN, "{{ range(3) | list }} {{ n }}", {"n": 1}, "[0, 1, 2] 1"),  # a Jinja global: Template.render
    (PLAIN, "{% set x = n + 1 %}{{ x }}", {"n": 1}, "2"),
])
def test_a_text_renders_as_jinja_renders_it(env: SandboxedEnvironment, source: str, variables: dict[str, object],
                                             expected: str) -> None:
    text = Text(env, source)
    assert text.render(dict(variables)) == env.from_string(source).render(variables) == expected


def test_a_text_says_which_variables_it_reads() -> None:
    text = Text(PLAIN, "{% for c in charges %}{{ c.code }}{% endfor %}{{ lines }}{% set x = 1 %}{{ x }}")
    assert text.names == {"charges", "lines"}
    assert Text(PLAIN, "{{ range(2) | list }}").shared is False


def test_a_variable_the_text_reads_and_nobody_gave_is_an_error() -> None:
    with pytest.raises(UndefinedError):
        Text(PLAIN, "{{ missing }}").render({})


def test_the_sandbox_still_holds() -> None:
    with pytest.raises(SecurityError):
        Text(PLAIN, "{{ x.__class__.__mro__ }}").render({"x": 1})


def test_every_card_template_reads_only_variables_the_renderer_gives() -> None:
    known = {"lines", "charges", "drug_line", "route", "drug", "identified", "drug_code", "unit_size",
             "quarter_label", "dose", "max_dose", "date", "ref", "what", "planned", "payer_name", "unit_words",
             "resource"}
    for rule, template in load_templates().items():
        assert template.summary.shared and template.detail.shared, rule
        unknown = template.names - known
        # Anything else is a key of the finding's detail, which the rule's tests render.
        assert all(name.isidentifier() for name in unknown), (rule, unknown)
