"""The primitive table: every primitive's kernel agrees with its type rule, and docs/primitives.md
is the generated table (so the doc cannot go stale)."""

from pathlib import Path

from graphtorch.autograd_rules import RULES
from graphtorch.compiler.primitives import PRIMITIVES, Kind, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "primitives.md"


def test_docs_primitives_md_is_the_generated_table():
    text = DOC.read_text()
    assert table() in text, "docs/primitives.md is stale: regenerate it from graphtorch.compiler.primitives.table()"
    assert text.count("\n| ") == len(PRIMITIVES) + 2  # the header, its rule, one row each


def test_every_primitive_is_documented_and_classified():
    for p in PRIMITIVES.values():
        assert p.doc and isinstance(p.kind, Kind), p.name
        assert f"`{p.name}`" in table()


def test_vjp_rules_name_existing_primitives():
    assert set(RULES) <= set(PRIMITIVES)
    no_rule = set(PRIMITIVES) - set(RULES)
    # these produce integers or booleans, or are sources and data-dependent: no gradient flows;
    # attention_grad and layer_norm_grad are themselves gradients (no double backward)
    assert no_rule == {"logical_not", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "full",
                       "iota", "rand", "argmax", "argmin", "nonzero", "argsort", "cumextreme_index", "attention_grad",
                       "layer_norm_grad", "max_pool_index"}
