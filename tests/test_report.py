"""`netdsl report`: the page's sections and figures, escaping of hostile specs, self-containment,
the command's refusals, progress only on a terminal, and (slow) the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.ir.graph import block_members, top_level_blocks

from helpers import SPECS, set_args, small_overrides

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["densenet_bc100_k12", "--set", "depth=16", "--set", "k=4"]  # 2 units per block


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self, tag: str | None = None) -> list[str]:
        return [a["id"] for t, a in self.tags if "id" in a and (tag is None or t == tag)]


def svgs(html: str) -> list[ET.Element]:
    """The page's inline drawings, each parsed as XML (so each is well-formed on its own)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, re.S)]


def report(tmp_path: Path, *args: str, name: str = "r.html") -> str:
    out = tmp_path / name
    assert main(["report", *args, "-o", str(out)]) == 0
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    return report(tmp_path_factory.mktemp("report"), *SMALL)


def test_sections_and_drawings_present(small):
    page = Page(small)
    assert page.ids("section") == ["summary", "blocks", "drawing", "matrix", "weights", "spec"]
    assert [s.get("id") for s in svgs(small)] == ["graph", "m"]  # no weights and no run: no heat map, no curves
    assert "No weights: give --run RUN_DIR or --weights CKPT." in "".join(page.text)
    # the drawing shows every unit of the 3 blocks, the matrix one panel per block
    graph = svgs(small)[0]
    classes = [g.get("class") for g in graph.iter("{http://www.w3.org/2000/svg}g")]
    assert classes.count("node unit") == 6
    assert small.count("block1: dense") >= 2 and small.count("block3: dense") >= 2  # drawing and matrix titles


def test_figures_equal_the_compiled_graph(small):
    import netdsl

    g = netdsl.compile_spec("densenet_bc100_k12", depth=16, k=4)
    text = "".join(Page(small).text)
    assert f"{g.graph['total_params']:,}parameters" in text and f"{g.graph['total_flops']:,}FLOPs (MAC)" in text
    # per-block params and FLOPs: the report's row against a sum over the block's member nodes
    rows = re.findall(r"<tr><td>(block\d)</td><td class=\"num\">2</td><td>[^<]*</td>"
                      r"<td class=\"num\">([\d,]+)</td><td class=\"num\">[\d.]+%</td><td class=\"num\">([\d,]+)</td>",
                      small)  # fmt: skip
    expect = []
    for b in top_level_blocks(g):
        members = block_members(g, b.name)
        params = sum(g.nodes[n].get("params", 0) for n in members)
        flops = sum(g.nodes[n].get("flops", 0) for n in members)
        expect.append((b.name, f"{params:,}", f"{flops:,}"))
    assert rows == expect and len(rows) == 3


def test_page_is_self_contained(small):
    page = Page(small)
    tags = {t for t, _ in page.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed", "base", "img"}
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "xlink:href", "action"):
                assert value.startswith(("#", "data:image/")), (tag, name, value[:60])
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", small) and "@import" not in small
    # ids are unique across the drawings (each drawing's are prefixed) and every reference resolves
    ids = page.ids()
    assert len(ids) == len(set(ids))
    refs = set(re.findall(r'href="#([^"]+)"', small)) | set(re.findall(r"url\(#([^)]+)\)", small))
    assert refs and refs <= set(ids)


def test_spec_is_highlighted_with_line_numbers(small):
    spec = (ROOT / "specs" / "densenet_bc.net").read_text()
    section = small.split('<section id="spec">', 1)[1]
    text = "".join(Page(section.split("</section>", 1)[0]).text)
    assert spec.rstrip("\n") in text  # every character of the spec, in order, after the line numbers
    assert f"{len(spec.splitlines())}" in text
    assert '<span class="k">network</span>' in section and '<span class="nb">conv</span>' in section
    # the included library, highlighted too
    lib = (ROOT / "specs" / "lib" / "densenet.net").read_text()
    assert "<summary>included: lib/densenet.net</summary>" in section
    assert lib.rstrip("\n") in "".join(Page(section.split("included: lib/densenet.net", 1)[1]).text)


def test_hostile_spec_text_comes_out_inert(tmp_path):
    spec = tmp_path / "x<b>.net"
    spec.write_text(
        '# </pre></td></tr></table><script>alert("comment")</script>\n'
        "/* <img src=x onerror=alert(1)> */\n"
        "network evil(tag=\"<script>alert('param')</script>\", k=4) {\n"
        "    input(3, 8, 8)\n"
        "    conv(k, 3)\n"
        "    block(2, dense) { bn; relu; conv(k, 3) }\n"
        "    block(3, rule(j < 1 or i - j <= 1)) { bn; relu; conv(k, 3) }\n"
        "    gap; flatten; linear(2)\n"
        "}\n"
    )
    html = report(tmp_path, str(spec), "--set", "k=2", "--set", 'tag="<svg onload=alert(2)>"')
    page = Page(html)
    assert "script" not in {t for t, _ in page.tags} and "img" not in {t for t, _ in page.tags}
    assert not [(t, n) for t, a in page.tags for n in a if n.startswith("on")]
    assert len(svgs(html)) == 2  # only the two drawings are svg elements (each well-formed XML)
    text = "".join(page.text)
    for hostile in (
        '<script>alert("comment")</script>',
        "<img src=x onerror=alert(1)>",
        "<script>alert('param')</script>",  # in the highlighted spec
        'tag="<svg onload=alert(2)>"',  # the --set value, in the header
        "x<b>.net",  # the file name
    ):
        assert hostile in text, hostile
    # a rule's text holds '<': in the blocks table, and as the drawing's and the matrix's titles
    assert text.count("rule(j < 1 or i - j <= 1)") >= 3


def write_run(run: Path, graph_overrides: dict) -> dict:
    """A run folder in the format `netdsl train` writes (metrics via its own writer)."""
    import torch

    import netdsl
    from netdsl.train.metrics import write_metrics

    run.mkdir()
    rows = [
        {"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_acc": 30.0 * e, "val_loss": 2.2 / e, "val_acc": 25.0 * e}
        | {"seconds": 1.0, "images_per_s": 100.0}
        for e in (1, 2, 3)
    ]
    write_metrics(run, rows)
    results = {
        "epochs": 3,
        "best_epoch": 3,
        "best": {"loss": 0.7312, "top1": 76.54321, "top5": 99.1, "images": 359},
        "last": {"loss": 0.7312, "top1": 76.54321, "top5": 99.1, "images": 359},
    }
    (run / "results.json").write_text(json.dumps(results))
    info = {"spec": {"preset": "densenet_bc100_k12"}, "user_overrides": graph_overrides, "seed": 5}
    info |= {"data": {"source": "digits"}, "recipe": {"name": "densenet", "epochs": 3, "batch_size": 64}}
    (run / "run.json").write_text(json.dumps(info))
    model = netdsl.build_model("densenet_bc100_k12", **graph_overrides)
    torch.save(model.state_dict(), run / "best.pt")
    return results


def test_run_adds_curves_metrics_and_heat_map(tmp_path):
    write_run(tmp_path / "run", {"depth": 16, "k": 4})
    html = report(tmp_path, *SMALL, "--run", str(tmp_path / "run"))
    page = Page(html)
    assert page.ids("section") == ["summary", "blocks", "drawing", "matrix", "weights", "training", "spec"]
    assert [s.get("id") for s in svgs(html)] == ["graph", "m", "w", "curves"]
    text = "".join(page.text)
    assert "best0.731276.5499.1359" in text  # checkpoint, loss, top-1, top-5, images (4 significant digits)
    assert "recipedensenet, 3 epochs, batch 64" in text and "seed5" in text
    assert html.count('<tr><td class="num">') == 3  # one row per epoch
    assert "mean |weight|" in text


def test_heat_map_of_another_network_is_refused(tmp_path, capsys):
    write_run(tmp_path / "run", {"depth": 10, "k": 4})
    assert main(["report", *SMALL, "--run", str(tmp_path / "run"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    hint = "the run was trained as 'netdsl train densenet_bc100_k12 --set depth=10 --set k=4': report it with"
    assert "the checkpoint" in err and hint in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_render_steps_in_order():
    import netdsl
    from netdsl.report import STEPS, ReportInput, render_report

    seen: list[str] = []
    g = netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4)
    render_report(ReportInput(g, [("x.net", "network x() {}\n")]), seen.append)
    assert seen == list(STEPS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{tmp}/r.txt"], "-o {tmp}/r.txt: a report is an HTML file; end the name in .html"),
        (["-o", "{tmp}/missing/r.html"], "the folder '{tmp}/missing' does not exist"),
        (["--run", "{tmp}/nope", "-o", "{tmp}/r.html"], "--run {tmp}/nope: no such folder"),
        (["--weights", "{tmp}/w.pt", "-o", "{tmp}/r.html"], "--weights {tmp}/w.pt: no such file"),
    ],
)
def test_bad_arguments_refused_before_work(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["report", "no_such_preset", *args]) == 2  # refused before the target is even looked up
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_failure_leaves_existing_output_alone(tmp_path, capsys):
    out = tmp_path / "r.html"
    out.write_text("mine")
    assert main(["report", "densenet_bc100_k12", "--set", "nope=1", "-o", str(out)]) == 2
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_quiet_when_not_a_terminal(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "densenet_bc100_k12", "--set", "depth=10", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"wrote {out}\n"


@pytest.mark.slow
def test_progress_on_a_terminal_only(tmp_path):
    """In a pseudo-terminal the command draws rich's bar; in a pipe it prints one line."""
    import pty

    cmd = [sys.executable, "-m", "netdsl", "report", "densenet_bc100_k12", "--set", "depth=10"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    piped = subprocess.run([*cmd, "-o", str(tmp_path / "a.html")], capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0 and piped.stdout == "" and piped.stderr == f"wrote {tmp_path / 'a.html'}\n"
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*cmd, "-o", str(tmp_path / "b.html")], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    from netdsl.report import STEPS

    # the bar: n/total steps (the report's steps and writing the file), a step name
    assert "report" in shown and f"/{len(STEPS) + 1}" in shown and "matrices" in shown
    assert (tmp_path / "b.html").read_text() == (tmp_path / "a.html").read_text()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    """`netdsl report densenet_bc100_k12` (and a report of a real tiny run) in Chromium: no console
    error, every drawing laid out with a non-empty box, a screenshot taken."""
    import time

    import browser

    assert browser.available(), "install Debian's chromium and chromium-driver (.ci/run does)"
    t0 = time.perf_counter()
    full = tmp_path / "r.html"
    assert main(["report", "densenet_bc100_k12", "-o", str(full)]) == 0
    run = tmp_path / "run"
    train = ["train", *SMALL, "--epochs", "1", "--batch-size", "32", "--limit-train", "64", "--no-progress"]
    assert main([*train, "--threads", "1", "--out", str(run)]) == 0
    with_run = tmp_path / "run.html"
    assert main(["report", *SMALL, "--run", str(run), "-o", str(with_run)]) == 0
    rendered = time.perf_counter()

    driver = browser.chromium(1280, 900)
    try:
        for page, drawings in ((full, ["graph", "m"]), (with_run, ["graph", "m", "w", "curves"])):
            driver.get(page.as_uri())
            assert driver.title.startswith("netdsl report: densenet_bc")
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == []
            boxes = driver.execute_script(browser.SVG_BOXES)
            assert [b[0] for b in boxes] == drawings
            assert all(w > 50 and h > 50 for _, w, h in boxes), boxes
            shot = tmp_path / f"{page.stem}.png"
            assert driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    finally:
        driver.quit()
    print(f"rendered in {rendered - t0:.1f} s, browser checks in {time.perf_counter() - rendered:.1f} s")


def test_inline_svg_drops_active_content_and_scopes_ids():
    from netdsl.report.svg import inline_svg

    hostile = (
        '<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)">'
        "<metadata><a href='http://x'/></metadata><script>alert(2)</script><foreignObject><p>x</p></foreignObject>"
        '<style>*{stroke:red} text, rect {fill:blue}</style><linearGradient id="g"/><rect id="g" style="fill:url(#g)"/>'
        '<a xlink:href="javascript:alert(3)"><image xlink:href="http://x/y.png"/>'
        '<image href="data:image/png;base64,AA"/>'
        '<use xlink:href="#g"/><text onmouseover="alert(4)">&lt;script&gt;</text></a></svg>'
    )
    assert inline_svg(hostile, "d") == (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" id="d">'
        "<style>#d *{stroke:red}#d text, #d rect{fill:blue}</style>"
        '<linearGradient id="d-g" /><rect id="d-g-2" style="fill:url(#d-g)" />'
        '<a><image /><image href="data:image/png;base64,AA" /><use xlink:href="#d-g" />'
        "<text>&lt;script&gt;</text></a></svg>"
    )


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_bundled_spec_reports(tmp_path, spec):
    html = report(tmp_path, str(spec), *set_args(small_overrides(spec)))
    page = Page(html)
    assert page.ids("section") == ["summary", "blocks", "drawing", "matrix", "weights", "spec"]
    drawings = svgs(html)
    assert [d.get("id") for d in drawings][:1] == ["graph"]
    ids = page.ids()
    assert len(ids) == len(set(ids))
