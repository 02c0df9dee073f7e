"""The work budget (issue 16.3) and the frontend's one error type (issue 14.5).

Every limit refuses with a located LimitError that names the limit and the flag raising it, before
the expensive part is built; the flags raise the limits; big-but-legal specs stay fast."""

from __future__ import annotations

import random
import time

import pytest

from netdsl.api import compile_spec
from netdsl.cli import main
from netdsl.errors import LimitError, NetdslError, SpecTypeError, SpecValueError
from netdsl.frontend import Limits, lower_spec, parse
from netdsl.frontend.evaluate import Env, Evaluator
from netdsl.frontend.lower import LIMIT_FLAGS

HEAD = "network n() {\n    input(3, 8, 8)\n"


def spec(tmp_path, body: str, name: str = "s.net"):
    path = tmp_path / name
    path.write_text(HEAD + body + "}\n")
    return path


def refused(path, limits: Limits | None = None) -> LimitError:
    with pytest.raises(LimitError) as info:
        lower_spec(path, limits=limits)
    return info.value


# ---- each limit: located, named, raisable -----------------------------------------------------
@pytest.mark.parametrize(
    "body, line, flag",
    [
        ("    for a in 1..400 { for b in 1..400 { let c = a } }\n", 3, "--max-loop-iterations"),
        ("    for a in 1..60000 { let c = a }\n    for b in 1..60000 { let d = b }\n", 4, "--max-loop-iterations"),
        ("    repeat(200000) { bn }\n", 3, "--max-loop-iterations"),
        (
            "    parallel(concat) {\n        for i in 1..100000000 { branch { conv(4) } }\n    }\n",
            4,
            "--max-loop-iterations",
        ),
        ("    block(6000, path(2)) { conv(2) }\n    block(6000, path(2)) { conv(2) }\n", 4, "--max-layers"),
        ("    block(2000, dense) { conv(2, 1) }\n", 3, "--max-edges"),
        ("    block(1000, rule(i - j < 3)) { conv(2, 1) }\n", 3, "--max-edges"),
        ("    for a in 1..300 { conv(8, 1) }\n", 3, "--max-nodes"),
    ],
)
def test_each_budget_is_located_and_names_its_flag(tmp_path, body, line, flag):
    path = spec(tmp_path, body)
    limits = Limits(max_nodes=200) if flag == "--max-nodes" else None
    start = time.process_time()
    err = refused(path, limits)
    assert time.process_time() - start < 5
    assert err.span.file == str(path) and err.span.line == line
    name = next(k for k, v in LIMIT_FLAGS.items() if v == flag)
    assert err.hint == f"the limit is {getattr(limits or Limits(), name):,}; raise it with {flag}"


def test_the_edge_budget_is_checked_before_the_block_is_built(tmp_path, monkeypatch):
    from netdsl.frontend import lower as lower_module

    built = []
    real = lower_module.Lowerer.add
    monkeypatch.setattr(
        lower_module.Lowerer,
        "add",
        lambda self, node_id, *a, **k: built.append(node_id) or real(self, node_id, *a, **k),
    )
    err = refused(spec(tmp_path, "    block(2000, dense) { conv(2, 1) }\n"))
    assert "2,001,000" in err.message
    assert not any(n.startswith("block1") for n in built)


def test_limits_count_every_loop_together_and_flags_raise_them(tmp_path, capsys):
    path = spec(tmp_path, "    for a in 1..400 { for b in 1..400 { if a == b and a % 100 == 0 { bn } } }\n")
    assert main(["check", str(path)]) == 2
    assert "raise it with --max-loop-iterations" in capsys.readouterr().err
    assert main(["check", str(path), "--max-loop-iterations", "100000000"]) == 0
    assert capsys.readouterr().out == "ok: n: 24 parameters, 5 ops\n"  # 400 + 400 * 400 iterations, 4 bn


def test_max_edges_and_max_layers_flags_set_the_limits(tmp_path, capsys):
    """The flags below and above a 100-unit dense block's 5,050 connections, at and below its 100
    layers (the defaults' refusals are located above; raising them past a default is the slow test
    below)."""
    path = spec(tmp_path, "    block(100, dense) { conv(1, 1) }\n")
    assert main(["check", str(path), "--max-edges", "5000"]) == 2
    assert "about 5,050 connections, more than the 5,000 edges left" in capsys.readouterr().err
    assert main(["check", str(path), "--max-edges", "6000", "--max-layers", "100"]) == 0
    # unit i reads i channels (3 + i - 1), a 1x1 conv to 1 channel: 3 + 4 + ... + 102 weights
    assert capsys.readouterr().out == f"ok: n: {sum(range(3, 103)):,} parameters, {1 + 100 + 100} ops\n"
    assert main(["check", str(path), "--max-edges", "6000", "--max-layers", "99"]) == 2
    assert "more than 99 layers" in capsys.readouterr().err


@pytest.mark.slow  # an 800-unit dense block (seconds); the flags on a 100-unit one above
def test_max_edges_and_max_layers_flags_raise_the_limits(tmp_path, capsys):
    path = spec(tmp_path, "    block(800, dense) { conv(1, 1) }\n")
    assert main(["check", str(path)]) == 2
    assert "--max-edges" in capsys.readouterr().err
    assert main(["check", str(path), "--max-edges", "400000", "--max-layers", "800"]) == 0
    # unit i reads i channels (3 + i - 1), a 1x1 conv to 1 channel: 3 + 4 + ... + 802 weights
    assert capsys.readouterr().out == f"ok: n: {sum(range(3, 803)):,} parameters, {1 + 800 + 800} ops\n"
    assert main(["check", str(path), "--max-edges", "400000", "--max-layers", "799"]) == 2
    assert "more than 799 layers" in capsys.readouterr().err


# ---- big specs are answered quickly --------------------------------------------------------------
def test_block_2000_dense_is_answered_in_well_under_10_s(tmp_path, capsys):
    path = spec(tmp_path, "    block(2000, dense) { conv(2, 1) }\n")
    start = time.process_time()
    assert main(["check", str(path)]) == 2
    assert time.process_time() - start < 5
    assert "a dense block of 2,000 units has about 2,001,000 connections" in capsys.readouterr().err


def test_sparsenet_exp121_with_a_block_of_3000_layers_is_answered_quickly(capsys):
    start = time.process_time()
    assert main(["check", "sparsenet_exp121", "--set", "blocks=[6, 12, 3000, 16]"]) == 2
    assert time.process_time() - start < 5
    assert "rule(ispow2(i - j)) tests 4,501,500 candidate connections" in capsys.readouterr().err


@pytest.mark.slow
def test_sparsenet_exp121_with_3000_layers_compiles_when_the_budget_allows():
    start = time.process_time()
    g = compile_spec("sparsenet_exp121", blocks=[6, 12, 3000, 16], limits=Limits(max_edges=10_000_000))
    assert time.process_time() - start < 30
    assert g.number_of_nodes() == 21260


def test_nested_window_blocks_probe_linearly(tmp_path):
    depth = 22
    text = "network w() {\n    input(4, 8, 8)\n"
    for d in range(depth):
        text += "    " * (d + 1) + "block(1, window(1), output=last) {\n"
    text += "    " * (depth + 1) + "conv(4)\n"
    for d in range(depth, 0, -1):
        text += "    " * d + "}\n"
    path = tmp_path / "w.net"
    path.write_text(text + "}\n")
    from netdsl.frontend.lower import blocks

    probes = []
    real = blocks.probe
    blocks.probe = lambda lw, *a: probes.append(1) or real(lw, *a)
    try:
        start = time.process_time()
        g = lower_spec(path)
    finally:
        blocks.probe = real
    assert time.process_time() - start < 5
    assert len(probes) == depth  # once per level, not 2**depth
    assert g.nodes[g.graph["output"]]["shape"] == (4, 8, 8)


# ---- compiled rules equal the interpreter ----------------------------------------------------------
LEAVES = ["i", "j", "0", "1", "2", "3", "k", "2.5", "true", "false", "flag", "big"]
BINARY = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or"]
CALLS = ["ispow2", "abs", "floor", "ceil", "min", "max", "int", "round"]


def random_expr(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice(LEAVES)
    if roll < 0.45:
        return "(" + rng.choice(["-", "not "]) + random_expr(rng, depth + 1) + ")"
    if roll < 0.6:
        name = rng.choice(CALLS)
        args = [random_expr(rng, depth + 1) for _ in range(2 if name in ("min", "max") else 1)]
        return f"{name}({', '.join(args)})"
    return f"({random_expr(rng, depth + 1)} {rng.choice(BINARY)} {random_expr(rng, depth + 1)})"


def outcome(predicate, i, j):
    try:
        return ("value", predicate(i, j))
    except NetdslError as err:
        return ("error", type(err).__name__, err.message)


def test_compiled_rules_agree_with_the_interpreter_on_values_and_errors():
    from netdsl.frontend import rule_compile

    rng = random.Random(16)
    compiled = 0
    env = Env({"k": 4, "flag": True, "big": 10**17})
    for _ in range(1500):
        text = random_expr(rng)
        expr = parse(f"network n() {{ let r = {text} }}").networks[0].body[0].value
        fast = rule_compile.compile_rule(expr, env.lookup)
        if fast is None:
            continue
        compiled += 1
        ev = Evaluator()

        def interpreted(i, j, _expr=expr, _ev=ev):
            return _ev._truth(_ev.eval(_expr, env.child({"i": i, "j": j})), _expr.span)

        def guarded(i, j, _fast=fast, _slow=interpreted):
            try:
                return _fast(i, j)
            except rule_compile.Fallback:
                return _slow(i, j)

        for i in range(1, 7):
            for j in range(i):
                want = outcome(interpreted, i, j)
                got = outcome(guarded, i, j)
                assert got == want, (text, i, j)
                if want[0] == "value":
                    assert type(got[1]) is bool
    assert compiled > 300  # the fast path covers most arithmetic rules


def test_a_rule_block_gives_the_same_connections_compiled_or_interpreted(tmp_path):
    body = "    conv(4)\n    block(40, rule(j == 0 or ispow2(i - j) or (i + j) % 7 == k)) { conv(2, 1) }\n"
    path = tmp_path / "r.net"
    path.write_text("network n(k=3) {\n    input(3, 8, 8)\n" + body + "}\n")
    g = lower_spec(path)
    reads = [u.reads for u in g.graph["blocks"][0].units]
    want = [
        tuple(j for j in range(i) if j == 0 or (i - j) & (i - j - 1) == 0 or (i + j) % 7 == 3) for i in range(1, 41)
    ]
    assert reads == want


# ---- one error type (issue 14.5) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "loop, error, message, column",
    [
        ('for i in "a"..3', SpecTypeError, 'a range needs integers, got string "a"', 18),
        ("for i in 1..2.5", SpecTypeError, "a range needs integers, got float 2.5", 21),
        ("for i in 5..1", SpecValueError, "the range 5..1 runs backwards", 18),
        ("for i in true..3", SpecTypeError, "a range needs integers, got bool true", 18),
        ("for i in 3", SpecTypeError, "'for' needs a range a..b or a list, got int", 18),
    ],
)
def test_parallel_for_with_a_bad_range_is_a_located_netdsl_error(tmp_path, loop, error, message, column):
    path = spec(tmp_path, f"    parallel(concat) {{\n        {loop} {{ branch {{ conv(4) }} }}\n    }}\n")
    with pytest.raises(error) as info:
        lower_spec(path)
    assert info.value.message == message
    assert (info.value.span.line, info.value.span.column) == (4, column)


def test_parallel_for_over_an_empty_range_or_a_list_still_works(tmp_path):
    path = spec(
        tmp_path,
        "    parallel(concat) {\n        for w in [2, 3] { branch { conv(w) } }\n"
        "        for i in 1..0 { branch { conv(9) } }\n    }\n",
    )
    g = lower_spec(path)
    assert g.nodes[g.graph["output"]]["shape"] == (5, 8, 8)


@pytest.mark.parametrize("digits", [4301, 5000, 101])
def test_integer_literals_with_thousands_of_digits_are_refused_where_written(tmp_path, digits):
    path = spec(tmp_path, f"    conv({'9' * digits})\n")
    with pytest.raises(SpecValueError) as info:
        lower_spec(path)
    assert info.value.message == f"number too large ({digits:,} digits)"
    assert (info.value.span.line, info.value.span.column, info.value.span.end_column) == (3, 10, 10 + digits)


@pytest.mark.parametrize(
    "stmt, message",
    [
        ("conv(-1)", "conv() 'out' must be >= 1, got -1"),
        ("conv(0)", "conv() 'out' must be >= 1, got 0"),
        ("conv(4, stride=0)", "conv() 'stride' must be >= 1, got 0"),
        ("linear(-3)", "linear() 'out' must be >= 1, got -3"),
        ("block(0, dense) { conv(2) }", "block() 'units' must be >= 1, got 0"),
        ("repeat(-1) { bn }", "repeat() 'n' must be >= 0, got -1"),
        ("block(2, window(0)) { conv(2) }", "window size must be >= 1, got 0"),
        ("maxpool(0)", "maxpool() 'kernel' must be >= 1, got 0"),
        ("avgpool(2, pad=-1)", "avgpool() 'pad' must be >= 0, got -1"),
    ],
)
def test_negative_and_zero_sizes_are_clear_errors(tmp_path, stmt, message):
    with pytest.raises(SpecValueError) as info:
        lower_spec(spec(tmp_path, f"    {stmt}\n"))
    assert info.value.message == message and info.value.span.line == 3


def test_negative_input_size_and_set_value_are_clear_errors(tmp_path, capsys):
    path = tmp_path / "i.net"
    path.write_text("network n(k=4) {\n    input(-3, 8, 8)\n    conv(k)\n}\n")
    with pytest.raises(SpecValueError, match="'channels' must be >= 1, got -3"):
        lower_spec(path)
    path.write_text("network n(k=4) {\n    input(3, 8, 8)\n    conv(k)\n}\n")
    assert main(["check", str(path), "--set", "k=-4"]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:3:10: error: conv() 'out' must be >= 1, got -4")
