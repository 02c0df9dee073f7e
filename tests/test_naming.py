"""netdsl.naming: the rules for names that reach emitted Python and ONNX, in one place."""

from __future__ import annotations

import pytest

from netdsl import naming
from netdsl.errors import IRError, Span, SpecNameError

SPAN = Span("t.net", 1, 1)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("densenet_bc", "DensenetBc"), ("block1.unit", "Block1Unit"), ("_", "Net"), ("_3x", "Net3x"), ("", "Net")],
)
def test_camel_case_makes_a_class_name(name, cls):
    assert naming.camel_case(name) == cls


@pytest.mark.parametrize("bad", ["a b", "1x", "class", "ünï", "a\n", ""])
def test_checked_identifier_refuses_what_is_not_an_ascii_identifier(bad):
    with pytest.raises(IRError, match="unsafe identifier"):
        naming.checked_identifier(bad)


def test_onnx_names_are_dotted_identifiers():
    assert naming.checked_onnx_name("block1.unit3.conv1") == "block1.unit3.conv1"
    for bad in ("a/b", "a..b", ".a", 3):
        with pytest.raises(IRError):
            naming.checked_onnx_name(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("label", ["forward", "input_shape", "_x", "for", "self"])
def test_reserved_labels_are_refused(label):
    with pytest.raises(SpecNameError):
        naming.check_label(label, SPAN)


def test_network_names_whose_class_is_generated_are_refused():
    naming.check_network_name("densenet_bc", SPAN)
    with pytest.raises(SpecNameError, match="its class name 'F' is reserved"):
        naming.check_network_name("f", SPAN)
    with pytest.raises(SpecNameError, match="characters long"):
        naming.check_network_name("n" * (naming.MAX_NAME_LENGTH + 1), SPAN)


def test_generated_names_are_identifiers_the_emitters_never_hand_out():
    assert all(naming.is_identifier(n) for n in naming.GENERATED_IDENTIFIERS)
    # the module-level names of the emitted file a label would shadow are reserved labels too
    assert {"F", "nn", "torch", "self"} <= naming.RESERVED_LABELS & naming.GENERATED_IDENTIFIERS
