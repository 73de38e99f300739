"""Card text without Jinja's runtime: a template written in the part of Jinja that cards/ uses, compiled once
into a plain Python function of its variables.

Jinja compiles a template to Python as well, and then renders each text through its runtime: a Context made
for the call, a generator and its joining, each variable looked up through the Context. That costs about
4 µs a text, and a typical hook call renders six (a tenth of the card stage). From the template's syntax
tree, `python_of` writes a function that does what Jinja's generated code does for the same nodes, with the
same parts of the environment: its sandboxed attribute read (SandboxedEnvironment.getattr), its filters and
tests (call_filter, call_test), its finalize, its `undefined` for a variable it is not given (StrictUndefined:
any use of it raises, as in Jinja). A template with any other node (a call, a macro, an assignment, `loop`, a
filter or test outside FILTERS and TESTS, a name Jinja reads from its globals) is None here: Jinja renders it.
tests/unit/test_textcode.py holds every text of cards/ to Jinja's, for the scenarios' findings and for
generated variables; a review fuzzed some 256,000 templates of the subset against Jinja without a different text.
The one known difference is a Jinja bug: where its optimizer folds `'inf' | float` into a test or a loop's
sequence, the code it writes names `inf` and fails; here that template renders."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import meta, nodes
from jinja2.environment import Environment
from jinja2.nodes import EvalContext
from jinja2.runtime import Undefined

__all__ = ["Render", "python_of", "render_function"]

Render = Callable[[Mapping[str, Any]], str]

# Filters and tests that need neither the Context nor anything but their value and arguments.
FILTERS = frozenset({"join", "length", "count", "replace", "lower", "upper", "trim", "title", "capitalize", "default",
                     "d", "first", "last", "round", "int", "float", "string", "abs", "list", "sort", "unique",
                     "wordcount"})
TESTS = frozenset({"defined", "undefined", "none", "number", "string", "sequence", "mapping", "even", "odd"})
COMPARISONS = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=", "in": "in",
               "notin": "not in"}
CONSTANTS = (str, int, float, bool, type(None))


class Unsupported(Exception):
    """A node this module does not write: the template stays with Jinja."""


def render_function(env: Environment, tree: nodes.Template) -> Render | None:
    """The template as a Python function of its variables, or None (Jinja renders it). Call it before Jinja
    compiles the tree, which changes it."""
    source = python_of(tree, finalize=env.finalize is not None, globals_=frozenset(env.globals))
    if source is None:
        return None
    namespace: dict[str, Any] = {
        "undefined": env.undefined, "f": env.finalize, "ga": env.getattr, "cf": env.call_filter,
        "ct": env.call_test, "ectx": EvalContext(env), "concat": env.concat,
        "Undefined": Undefined,
    }
    exec(compile(source, "<card text>", "exec"), namespace)  # noqa: S102 - written by python_of from the tree
    render: Render = namespace["render"]
    return render


def python_of(tree: nodes.Template, *, finalize: bool, globals_: frozenset[str] = frozenset()) -> str | None:
    """The source of `render(v)` for this template, or None when a node is not among those written here."""
    try:
        return Writer(finalize, globals_).template(tree)
    except Unsupported:
        return None


class Writer:
    def __init__(self, finalize: bool, globals_: frozenset[str]) -> None:
        self.finalize = finalize
        self.globals = globals_
        self.lines: list[str] = []
        self.loops = 0

    def template(self, tree: nodes.Template) -> str:
        loaded = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
        if "loop" in loaded or loaded & self.globals:
            raise Unsupported("a name Jinja gives itself")
        names = sorted(meta.find_undeclared_variables(tree))  # a loop's own name is the loop's
        self.lines = ["def render(v):", "    out = []", "    w = out.append"]
        scope = {}
        for n, name in enumerate(names):
            scope[name] = f"n{n}"
            self.lines.append(f"    n{n} = v[{name!r}] if {name!r} in v else undefined(name={name!r})")
        self.body(tree.body, scope, 1)
        self.lines.append("    return concat(out)")
        return "\n".join(self.lines) + "\n"

    def body(self, statements: list[nodes.Node], scope: dict[str, str], depth: int) -> None:
        pad = "    " * depth
        start = len(self.lines)
        for node in statements:
            if isinstance(node, nodes.Output):
                for child in node.nodes:
                    if isinstance(child, nodes.TemplateData):
                        if child.data:
                            self.lines.append(f"{pad}w({child.data!r})")
                    else:
                        value = self.expr(child, scope)
                        self.lines.append(f"{pad}w(str(f({value})))" if self.finalize else f"{pad}w(str({value}))")
            elif isinstance(node, nodes.If):
                self.lines.append(f"{pad}if {self.expr(node.test, scope)}:")
                self.body(node.body, scope, depth + 1)
                for other in node.elif_:
                    self.lines.append(f"{pad}elif {self.expr(other.test, scope)}:")
                    self.body(other.body, scope, depth + 1)
                if node.else_:
                    self.lines.append(f"{pad}else:")
                    self.body(node.else_, scope, depth + 1)
            elif isinstance(node, nodes.For):
                if not isinstance(node.target, nodes.Name) or node.else_ or node.test is not None or node.recursive:
                    raise Unsupported("a loop with more than a name, a sequence and a body")
                self.loops += 1
                inner = {**scope, node.target.name: f"l{self.loops}"}
                self.lines.append(f"{pad}for l{self.loops} in {self.expr(node.iter, scope)}:")
                self.body(node.body, inner, depth + 1)
            else:
                raise Unsupported(type(node).__name__)
        if len(self.lines) == start:
            self.lines.append(f"{pad}pass")

    def expr(self, node: nodes.Node, scope: dict[str, str]) -> str:
        if isinstance(node, nodes.Name) and node.ctx == "load":
            if node.name not in scope:  # a name only an assignment or a block would declare
                raise Unsupported(node.name)
            return scope[node.name]
        if isinstance(node, nodes.Const) and isinstance(node.value, CONSTANTS) \
                and not (isinstance(node.value, float) and not math.isfinite(node.value)):  # repr(inf) is no literal
            return repr(node.value)
        if isinstance(node, nodes.Getattr) and node.ctx == "load":
            return f"ga({self.expr(node.node, scope)}, {node.attr!r})"
        if isinstance(node, nodes.Not):
            return f"(not {self.expr(node.node, scope)})"
        if isinstance(node, nodes.And | nodes.Or):
            word = "and" if isinstance(node, nodes.And) else "or"
            return f"({self.expr(node.left, scope)} {word} {self.expr(node.right, scope)})"
        if isinstance(node, nodes.CondExpr):  # without an else: Jinja's plain Undefined, which writes nothing
            otherwise = self.expr(node.expr2, scope) if node.expr2 is not None else "Undefined()"
            return f"({self.expr(node.expr1, scope)} if {self.expr(node.test, scope)} else {otherwise})"
        if isinstance(node, nodes.Compare) and all(op.op in COMPARISONS for op in node.ops):
            parts = [self.expr(node.expr, scope)]
            parts += [f"{COMPARISONS[op.op]} {self.expr(op.expr, scope)}" for op in node.ops]
            return f"({' '.join(parts)})"
        if isinstance(node, nodes.Filter | nodes.Test):
            allowed = FILTERS if isinstance(node, nodes.Filter) else TESTS
            if node.node is None or node.name not in allowed or node.dyn_args is not None \
                    or node.dyn_kwargs is not None:
                raise Unsupported(f"{type(node).__name__} {node.name}")
            args = "".join(f"{self.expr(arg, scope)}, " for arg in node.args)
            kwargs = ", ".join(f"{kw.key!r}: {self.expr(kw.value, scope)}" for kw in node.kwargs)
            call = "cf" if isinstance(node, nodes.Filter) else "ct"
            return f"{call}({node.name!r}, {self.expr(node.node, scope)}, ({args}), {{{kwargs}}}, eval_ctx=ectx)"
        raise Unsupported(type(node).__name__)
