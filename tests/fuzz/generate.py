"""A hypothesis strategy for VALID specs: random stems, blocks of every pattern (dense, path,
window, rule, split, add-aggregated), residuals, parallel branches, SE, pooling, nested
templates. Each example comes with the output shape the generator itself predicts, from its own
channel arithmetic -- an independent reference for the IR's shape inference and for torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

TEMPLATES = """\
def layer(k, w=2) {
    bn; relu; conv(w * k, 1)
    bn; relu; conv(k, 3)
}

def plain(k) { conv(k, 3); bn; relu }

def nested(k) { plain(k); identity }

def keep() { bn; relu; conv(channels, 3) }
"""


@dataclass
class Generated:
    text: str
    shape: tuple[int, ...]  # predicted output shape, batch excluded
    input: tuple[int, int, int]


class _Net:
    def __init__(self, c: int, h: int):
        self.c, self.h = c, h
        self.lines: list[str] = []
        self.labels = 0

    def label(self) -> str:
        self.labels += 1
        return f"t{self.labels}"

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)


def _unit_call(draw, k: int) -> str:
    return draw(
        st.sampled_from(
            [
                f"layer({k})",
                f"layer({k}, w=1)",
                f"plain({k})",
                f"nested({k})",
                f"conv({k}, 3)",
                f"bn; relu; conv({k}, 1)",
            ]
        )
    )


def _pattern_block(draw, net: _Net) -> None:
    units = draw(st.integers(1, 4))
    k = draw(st.integers(1, 6))
    output = draw(st.sampled_from(["all", "new", "last"]))
    kind = draw(st.sampled_from(["dense", "path", "rule", "window"]))
    if kind == "path":
        far, near = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        if far + near == 0:
            near = 1
        pattern = draw(st.sampled_from([f"path(far={far}, near={near})", f"path({far + near})"]))
    elif kind == "rule":
        r = draw(st.integers(1, 3))
        pattern = draw(st.sampled_from([f"rule(j == 0 or i - j <= {r})", "rule(j < 2 or ispow2(i - j))"]))
    elif kind == "window":
        groups = draw(st.integers(1, 3))
        net.emit(f"conv({groups * k}, 1)")  # the window block's input: whole groups of width k
        net.c = groups * k
        pattern = f"window({draw(st.integers(1, 4))})"
    else:
        pattern = "dense"
    label = net.label() if draw(st.booleans()) else ""
    net.emit(f"{label + ': ' if label else ''}block({units}, {pattern}, output={output}) {{ {_unit_call(draw, k)} }}")
    if label:  # a labelled block is a tensor: read it back, the net is unchanged
        net.emit(f"use({label})")
    if output == "all":
        net.c = net.c + units * k
    elif output == "new":
        net.c = units * k
    else:
        net.c = k


def _add_block(draw, net: _Net) -> None:
    units = draw(st.integers(1, 3))
    pattern = draw(st.sampled_from(["dense", "window(1)", "path(far=1, near=1)"]))
    net.emit(f"block({units}, {pattern}, aggregate=add) {{ keep() }}")


def _split_block(draw, net: _Net) -> None:
    scale = draw(st.integers(2, 4))
    width = draw(st.integers(1, 3))
    net.emit(f"conv({scale * width}, 1)")
    stage = draw(st.booleans())
    net.emit(f"block(split({scale}), stage={'true' if stage else 'false'}) {{ conv(channels, 3); bn; relu }}")
    net.c = scale * width


def _residual(draw, net: _Net) -> None:
    h = net.label()
    net.emit(
        draw(
            st.sampled_from(
                [
                    "residual { keep() }",
                    "residual { bn; relu; conv(channels, 3); bn }",
                    f"{h}: identity; keep(); add({h})",
                ]
            )
        )
    )


def _parallel(draw, net: _Net) -> None:
    a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if draw(st.booleans()):
        net.emit(f"parallel(concat) {{ branch {{ conv({a}, 1) }} branch {{ plain({b}) }} }}")
        net.c = a + b
    else:
        net.emit(f"parallel(add) {{ branch {{ conv({a}, 1) }} branch {{ conv({a}, 3); bn }} }}")
        net.c = a


def _se(draw, net: _Net) -> None:
    net.emit(f"se(reduction={draw(st.integers(1, 4))})")


def _shrink(draw, net: _Net) -> None:
    if net.h < 2:
        return
    out = draw(st.integers(1, 8))
    # pools round an odd size down, a padded stride-2 conv rounds it up (3 -> 1 and 3 -> 2)
    text, h = draw(
        st.sampled_from(
            [
                (f"conv({out}, 1); avgpool(2)", net.h // 2),
                (f"conv({out}, 3, stride=2)", (net.h + 1) // 2),
                (f"conv({out}, 1); maxpool(2)", net.h // 2),
            ]
        )
    )
    net.emit(text)
    net.c, net.h = out, h


def _loop(draw, net: _Net) -> None:
    n = draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    net.emit(f"for r in 1..{n} {{ if r % 2 == 0 {{ conv({k}, 3) }} else {{ conv({k}, 1) }} }}")
    net.c = k


STAGES = [_pattern_block, _add_block, _split_block, _residual, _parallel, _se, _shrink, _loop]


@st.composite
def valid_specs(draw) -> Generated:
    c_in = draw(st.integers(1, 4))
    hw = draw(st.sampled_from([4, 6, 8]))
    stem = draw(st.integers(2, 8))
    net = _Net(stem, hw)
    net.emit(f"stem: conv({stem}, 3)")
    for stage in draw(st.lists(st.sampled_from(STAGES), min_size=1, max_size=5)):
        stage(draw, net)
    head = draw(st.sampled_from(["classes", "gap", "map"]))
    if head == "classes":
        classes = draw(st.integers(1, 10))
        net.emit(f"bn; relu; gap; fc: linear({classes})")
        shape: tuple[int, ...] = (classes,)
    elif head == "gap":
        net.emit("gap")
        shape = (net.c, 1, 1)
    else:
        shape = (net.c, net.h, net.h)
    body = "\n".join(net.lines)
    text = f"{TEMPLATES}\nnetwork generated() {{\n    input({c_in}, {hw}, {hw})\n{body}\n}}\n"
    return Generated(text, shape, (c_in, hw, hw))
