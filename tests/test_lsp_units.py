"""The language server's pieces in-process (no client): related locations, quick fixes, hover
counts on an included template's line, Markdown that keeps spec text literal."""

from __future__ import annotations

import shutil
from pathlib import Path

from lsprotocol import types as lsp

from netdsl import pipeline
from netdsl.lsp.analysis import analyse
from netdsl.lsp.describe import TIMES, code, escape, inline
from netdsl.lsp.diagnostics import to_diagnostics
from netdsl.lsp.fixes import code_actions
from netdsl.lsp.hover import hover_markdown

ROOT = Path(__file__).resolve().parent.parent


def check(path: Path, text: str | None = None, buffers=None):
    return analyse(path.as_uri(), path, 1, path.read_text() if text is None else text, buffers or {})


def test_a_template_defined_twice_across_files_relates_both_places(tmp_path):
    (tmp_path / "lib.net").write_text("def unit(k) {\n    conv(k, 3)\n}\n")
    spec = tmp_path / "spec.net"
    spec.write_text('include "lib.net"\ndef unit(k) { relu }\nnetwork t() { input(3, 8, 8); unit(4) }\n')
    a = check(spec)
    [diag] = to_diagnostics(a)
    assert "defined twice" in diag.message
    assert diag.range.start == lsp.Position(1, 0)
    [related] = diag.related_information or []
    assert related.location.uri == (tmp_path / "lib.net").as_uri()
    assert related.location.range.start == lsp.Position(0, 0)  # `def unit` in lib.net, line 1


def test_an_error_in_an_included_file_is_shown_on_the_include_and_located_there(tmp_path):
    (tmp_path / "lib.net").write_text("def unit(k) {\n    conv(k, 3\n}\n")
    spec = tmp_path / "spec.net"
    spec.write_text('include "lib.net"\nnetwork t() { input(3, 8, 8); unit(4) }\n')
    [diag] = to_diagnostics(check(spec))
    assert diag.range == lsp.Range(lsp.Position(0, 0), lsp.Position(0, 17))
    assert diag.message.startswith("in lib.net:")
    assert diag.related_information and diag.related_information[0].location.uri == (tmp_path / "lib.net").as_uri()


def test_the_open_buffer_of_an_include_is_read_instead_of_the_file(tmp_path):
    lib = tmp_path / "lib.net"
    lib.write_text("def unit(k) { conv(k, 3) }\n")
    spec = tmp_path / "spec.net"
    spec.write_text('include "lib.net"\nnetwork t() { input(3, 8, 8); unit(4) }\n')
    assert check(spec).error is None
    a = check(spec, buffers={lib.resolve(): "def other(k) { conv(k, 3) }\n"})
    assert a.error is not None and "unknown op or template 'unit'" in a.error.message
    assert a.reads == {lib.resolve()}


def test_did_you_mean_offers_each_candidate(tmp_path):
    spec = tmp_path / "t.net"
    text = "network t() {\n    input(3, 8, 8)\n    rleu\n}\n"
    spec.write_text(text)
    [diag] = to_diagnostics(check(spec))
    actions = code_actions(spec.as_uri(), text, [diag])
    assert [a.title for a in actions] == ["Change to 'relu'", "Change to 'relu6'"]


def test_hover_on_an_included_template_line_counts_every_unit_that_runs_it(tmp_path):
    (tmp_path / "lib").mkdir()
    shutil.copy(ROOT / "specs" / "lib" / "densenet.net", tmp_path / "lib")
    shutil.copy(ROOT / "specs" / "densenet_bc.net", tmp_path)
    root = check(tmp_path / "densenet_bc.net")
    lib = check(tmp_path / "lib" / "densenet.net")
    assert lib.graph is None and lib.error is None  # a template library is checked through its includers
    lines = lib.text.split("\n")
    start = next(i for i, x in enumerate(lines) if x.startswith("def bottleneck("))
    line = next(i for i, x in enumerate(lines) if i > start and x.strip() == "bn; relu; conv(k, 3)")
    text = hover_markdown(lib, lib.module, [root], line, lines[line].index("conv") + 1)
    assert text is not None
    graph = pipeline.compile_target(tmp_path / "densenet_bc.net", opt=0).graph
    convs = [n for n in graph.nodes if n.startswith("block") and n.endswith(".conv2")]
    total = sum(graph.nodes[n]["params"] for n in convs)
    assert f"made {len(convs)} times: {total:,} parameters" in text
    first = graph.nodes["block1.unit1.conv2"]
    assert f"`block1.unit1.conv2`: {TIMES.join(map(str, first['shape']))} · {first['params']:,} parameters" in text


def test_markdown_keeps_spec_text_literal():
    hostile = "<img src=x onerror=alert(1)> [link](http://x) **b** `tick` ```fence```"
    escaped = escape(hostile)
    assert "<" not in escaped.replace("\\<", "") and "[" not in escaped.replace("\\[", "")
    block = code(hostile)
    fence = block.split("\n")[0][: -len("netdsl")]
    assert len(fence) == 4 and block.endswith("\n" + fence)  # longer than the ``` inside
    assert inline("a`b") == "``a`b``"


def test_hover_on_a_pattern_lists_what_each_unit_reads_and_on_a_unit_body_its_units(tmp_path):
    spec = tmp_path / "p.net"
    text = "network t() {\n    input(3, 8, 8)\n    block(4, path(far=2, near=1)) { conv(4, 3) }\n}\n"
    spec.write_text(text)
    a = check(spec)
    assert a.error is None and a.graph is not None
    [b] = a.graph.graph["blocks"]
    at = text.split("\n")[2].index("path") + 1
    hover = hover_markdown(a, a.module, [], 2, at)
    assert hover is not None
    for u in b.units:
        assert f"- unit {u.index} reads {escape(b.reads_label(u.reads, limit=6))}" in hover

    hover = hover_markdown(a, a.module, [], 2, text.split("\n")[2].index("conv") + 1)
    assert hover is not None
    last = b.units[-1]
    params = sum(a.graph.nodes[n]["params"] for n in last.nodes)
    assert (
        f"`{last.output}`: {TIMES.join(map(str, a.graph.nodes[last.output]['shape']))} · {params:,} parameters" in hover
    )


def test_hover_on_a_label_used_as_a_tensor_names_its_statement(tmp_path):
    spec = tmp_path / "l.net"
    text = "network t() {\n    input(3, 8, 8)\n    a: conv(4, 3)\n    relu\n    add(a)\n}\n"
    spec.write_text(text)
    a = check(spec)
    hover = hover_markdown(a, a.module, [], 4, text.split("\n")[4].index("a)"))
    assert hover is not None and hover.startswith("```netdsl\na: conv(4, 3)\n```") and "label, line 3" in hover
