"""The one naming authority: which names may reach emitted Python and ONNX, and how they are spelt.

A spec's labels, stream names and network name end up as attribute names (``self.stem``),
variable names, a class name (``densenet_bc`` -> ``DensenetBc``) and ONNX node names
(``block1.unit3.conv1``). The frontend refuses bad names with a located error
(:func:`check_label`, :func:`check_network_name`); the emitters re-check every name they write
(:func:`checked_identifier`, :func:`checked_onnx_name`), since a graph may be built by hand.

This module sits at the bottom of the package: it imports nothing from netdsl but ``errors``.
"""

from __future__ import annotations

import keyword
import re

from .errors import IRError, Span, SpecNameError

__all__ = [
    "DOTTED_NAME",
    "GENERATED_CLASS_NAMES",
    "GENERATED_IDENTIFIERS",
    "IDENTIFIER",
    "MAX_NAME_LENGTH",
    "MODULE_ATTRIBUTES",
    "RESERVED_LABELS",
    "camel_case",
    "check_label",
    "check_length",
    "check_network_name",
    "checked_identifier",
    "checked_onnx_name",
    "class_name",
    "is_identifier",
]

# Labels and network names are repeated in every emitted line that uses them (attribute paths,
# ONNX node names): a cap keeps a hostile 100,000-character name from making the emitted source,
# and the time to write it, hundreds of megabytes and seconds long.
MAX_NAME_LENGTH = 64

# An ASCII Python identifier (the emitted torch source); a dotted path of them (ONNX node names,
# whose '/' is kept for the helper nodes' ``<id>/<part>`` names).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")

# Names a label may not take: they would shadow torch.nn.Module attributes or Python keywords in
# the emitted module (tests/test_backends.py checks this list against torch itself).
RESERVED_LABELS = frozenset(
    """
False None True and as assert async await break class continue def del elif else except finally for from
global if import in is lambda nonlocal not or pass raise return try while with yield
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half
ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory smart_apply
state_dict to to_empty train training type xpu zero_grad self torch nn F
""".split()  # noqa: SIM905 -- a word list reads better than a list literal
)

# Names a label may not take beyond RESERVED_LABELS: attributes the torch backends set on the
# module they build (a label of that name would replace them and fail at build time).
MODULE_ATTRIBUTES = frozenset({"input_shape", "spec_name", "memory_format", "output_names"})

# Class names the emitted torch source already uses; a network's class is its CamelCased name.
GENERATED_CLASS_NAMES = frozenset({"F", "nn", "torch", "SqueezeExcite", "Affine", "L2Norm"})

# Identifiers of the generated torch file itself (its variables and loop targets); the code
# generator never hands them out for a spec's tensors, nor the names of the runtime helpers and
# layer classes it may embed (netdsl.backends.torch.file.EMBEDDABLE_NAMES, read off their source).
GENERATED_IDENTIFIERS = frozenset(
    {
        "x",
        "self",
        "torch",
        "nn",
        "F",
        "checkpoint",
        "contextlib",
        "build",
        "Net",
        "cin",
        "feats",
        "unit",
        "reads",
        "runs",
        "start",
        "stop",
        "buf",
        # the planned loop's own targets (``for unit, start, stop, (a, b) in ...``): a label named
        # like them would be overwritten by the loop
        "a",
        "b",
    }
)


def is_identifier(name: str) -> bool:
    """An ASCII Python identifier that is not a keyword: safe as a name in emitted source."""
    return IDENTIFIER.fullmatch(name) is not None and not keyword.iskeyword(name)


def camel_case(path: str) -> str:
    """A network name or dotted path as a class name: ``densenet_bc`` -> ``DensenetBc``,
    ``block1.unit`` -> ``Block1Unit``; ``Net`` when nothing is left, ``Net``-prefixed when it would
    start with a digit."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", path) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Net"
    return "Net" + name if name[0].isdigit() else name


def checked_identifier(name: str) -> str:
    """``name`` itself, once checked safe to emit as a Python identifier (the emitters' last line
    of defence: the frontend already refused bad names with a located error)."""
    if not is_identifier(name):
        raise IRError(f"refusing to emit unsafe identifier {name!r}")
    return name


def class_name(network_name: str) -> str:
    """The emitted torch class of a network: its CamelCased name."""
    return checked_identifier(camel_case(network_name))


def checked_onnx_name(name: str) -> str:
    """A node id as an ONNX name. Ids come from validated spec identifiers; this re-checks, since
    a name with ``/`` could collide with the helper nodes' ``<id>/<part>`` names."""
    if not isinstance(name, str) or not DOTTED_NAME.fullmatch(name):
        raise IRError(f"node id {name!r} is not a dotted identifier; refusing to put it in an ONNX graph")
    return name


# ------------------------------------------------------------------ the frontend's located checks


def check_length(what: str, name: str, span: Span) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise SpecNameError(
            f"{what} is {len(name):,} characters long",
            span,
            f"names are at most {MAX_NAME_LENGTH} characters: they become Python and ONNX names",
        )


def check_label(label: str, span: Span) -> None:
    """Labels (and stream names) become attribute names in the emitted torch module
    (``self.stem``) and parts of node ids: refuse the names that would replace a module's own
    attributes or Python's (``forward``, ``__class__``)."""
    check_length("the label", label, span)
    if not label.isidentifier() or not label.isascii():
        raise SpecNameError(f"{label!r} cannot be a label: labels are ASCII identifiers", span)
    if label in RESERVED_LABELS or label in MODULE_ATTRIBUTES or keyword.iskeyword(label):
        raise SpecNameError(
            f"'{label}' cannot be a label: it is reserved",
            span,
            "pick another name; reserved names would clash in the emitted module",
        )
    if label.startswith("_"):
        raise SpecNameError(
            f"'{label}' cannot be a label: names starting with '_' are reserved",
            span,
            "start the label with a letter; '_' names belong to Python and torch internals",
        )


def check_network_name(name: str, span: Span) -> None:
    """A network's name becomes a Python class name in the emitted source (``densenet_bc`` ->
    ``DensenetBc``): refuse names that are not ASCII identifiers, are Python keywords, or whose
    class name is one the emitted file already uses (``f`` -> ``F``, torch.nn.functional)."""
    check_length("the network name", name, span)
    if not name.isidentifier() or not name.isascii() or keyword.iskeyword(name):
        raise SpecNameError(
            f"'{name}' cannot be a network name", span, "network names are ASCII identifiers other than Python keywords"
        )
    camel = camel_case(name)
    if name in GENERATED_CLASS_NAMES or camel in GENERATED_CLASS_NAMES or keyword.iskeyword(camel):
        raise SpecNameError(
            f"'{name}' cannot be a network name: its class name '{camel}' is reserved",
            span,
            "the emitted torch source already uses " + ", ".join(sorted(GENERATED_CLASS_NAMES)),
        )
