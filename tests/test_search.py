"""netdsl search, fast: the domain syntax, checks, exact costs, dry run, sampling, bad input.
Trials that train are in tests/test_search_slow.py."""

from __future__ import annotations

import json

import optuna
import pytest

from netdsl import compile_spec
from netdsl.cli import main
from netdsl.errors import SpecSyntaxError
from netdsl.explore.budget import Budget, parse_bound
from netdsl.explore.folder import folder_lock
from netdsl.explore.space import Space
from netdsl.explore.study import Search, SearchConfig, trial_spec
from netdsl.fmt import format_text
from netdsl.frontend.parser import parse

SPEC = """include "lib/densenet.net"

network s(blocks=[2, 2] in {[2, 2], [3, 3]}, k=4 in 4..8 step 4,
          connect=dense in {dense, path(far=1..2, near=1..2), window(1..3)}, classes=10) {
    input(3, 8, 8)
    stem: conv(2 * k, 3)
    for b in 1..len(blocks) {
        block(blocks[b - 1], connect) { basic(k) }
        if b < len(blocks) { transition(channels) }
    }
    head(classes)
}
"""
PLAIN = SPEC.replace(" in {[2, 2], [3, 3]}", "").replace(" in 4..8 step 4", "")
PLAIN = PLAIN.replace(" in {dense, path(far=1..2, near=1..2), window(1..3)}", "")


@pytest.fixture
def spec(write_spec):
    return write_spec(SPEC, "s.net")


# ---- the syntax -----------------------------------------------------------------------------
def test_a_spec_with_domains_compiles_with_its_defaults(spec, write_spec):
    plain = write_spec(PLAIN, "plain.net")
    assert compile_spec(str(spec)).graph["total_params"] == compile_spec(str(plain)).graph["total_params"]
    assert compile_spec(str(spec), k=8).graph["total_params"] == compile_spec(str(plain), k=8).graph["total_params"]


def test_domains_parse_and_format_canonically():
    text = (
        "network n(k=12 in 8 .. 32 step 4,lr=0.1 in 1e-4..1e-1  log, c=dense in { dense,path( far=1..8, near=1..8 ),"
        " window(2..8), graph(ws(32, 4, 0.25..0.9), seed=1..20), } ) { input(3, 8, 8); conv(k, 3) }"
    )
    out = format_text(text)
    assert out.startswith(
        "network n(k=12 in 8..32 step 4, lr=0.1 in 1e-4..1e-1 log, c=dense in {dense, path(far=1..8, near=1..8),"
        " window(2..8), graph(ws(32, 4, 0.25..0.9), seed=1..20)}) {"
    )
    assert format_text(out) == out
    net = parse(text).networks[0]
    k, lr, c = net.params
    assert (k.domain.step.value, lr.domain.log, len(c.domain.options)) == (4, True, 4)
    # 'step' and 'log' stay free as names outside a range
    parse("network n(step=1, log=2) { input(3, 8, 8); let x = step + log; conv(x, 3) }")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("network n() { input(3, 8, 8); conv(1..3, 3) }", "a range is a search domain"),
        ("network n() { input(3, 8, 8); conv({4, 8}, 3) }", "a choice {...} is a search domain"),
        ("network n(k in 1..3) { input(3, 8, 8) }", "has a domain but no default"),
        ("network n(k=1 in 1..3 step 1 log) { input(3, 8, 8) }", "a log-spaced range takes no step"),
        ("def t(k=1 in 1..3) { conv(k, 3) }\nnetwork n() { input(3, 8, 8) }", "template parameter 'k'"),
    ],
)
def test_domains_where_none_may_stand_are_refused_located(text, message):
    with pytest.raises(SpecSyntaxError) as err:
        parse(text, "x.net")
    assert message in str(err.value) and err.value.span.line >= 1


# ---- netdsl check ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message", "column"),
    [
        ("k=8 in 16..4", "empty range: 16 > 4", 18),
        ("k=8 in 4..16 step 0", "step must be > 0", 29),
        ("k=8 in 0.5..2.5", "parameter 'k' is int", 18),
        ("k=8 in 4..8, c=dense in {dense, window(0..3)}", "window size must be >= 1, got 0", 50),
        ("k=8 in 4..8, c=dense in {dense, split(1..3)}", "split scale must be >= 2", 49),
        ("k=8 in 4..8, lr=0.1 in 0.0..1.0 log", "must start above 0", 34),
        ("k=8 in {4, true}", "this domain gives bool true", 22),
    ],
)
def test_check_refuses_a_bad_domain_where_it_is_written(write_spec, capsys, params, message, column):
    f = write_spec(f"network b({params}) {{ input(3, 8, 8); conv(k, 3); block(2, dense) {{ conv(4, 3) }} }}\n")
    assert main(["check", str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"b.net:1:{column}:" in err.replace("t.net", "b.net"), err
    assert "Traceback" not in err


def test_check_warns_of_a_domain_the_body_never_reads(write_spec, capsys):
    f = write_spec("network b(k=8 in 4..8, z=1 in 1..3) { input(3, 8, 8); conv(k, 3) }\n")
    assert main(["check", str(f)]) == 0
    err = capsys.readouterr().err
    assert "warning: parameter 'z' has a search domain but the network never reads it" in err
    assert main(["check", str(f), "--json"]) == 0
    assert any("'z'" in w["message"] for w in json.loads(capsys.readouterr().out)["warnings"])


# ---- the space and its exact costs -------------------------------------------------------------
def test_space_lists_every_point_with_conditional_parameters(spec):
    space = Space(spec)
    points = list(space.points())
    # blocks 2 x k 2 x (dense 1 + path 2*2 + window 3)
    assert space.size() == len(points) == 2 * 2 * (1 + 4 + 3)
    assert len({p.key() for p in points}) == len(points)
    path = [p for p in points if p.values["connect"].startswith("path")]
    assert all("connect.path.far" in p.params and "connect.window.g" not in p.params for p in path)
    assert {p.values["connect"] for p in points} >= {"dense", "path(far=2, near=1)", "window(3)"}


@pytest.mark.parametrize(
    ("narrowed", "size"),
    [
        ({"blocks": "{[2, 2]}", "k": "{4}", "connect": "{dense, path(far=1..2, near=1), window(1..2)}"}, 5),
        pytest.param({}, 32, marks=pytest.mark.slow),
    ],
)
def test_costs_and_feasible_count_match_independent_compiles(spec, narrowed, size):
    cfg = SearchConfig(str(spec), space=narrowed, budget=["params<=3K", "flops>=60K"]).validate()
    s = Search(cfg)
    budget = Budget.parse(cfg.budget)
    fits = 0
    for p in s.space.points():
        g = compile_spec(str(spec), **p.values, classes=10, opt=0)
        independent = {"params": g.graph["total_params"], "flops": g.graph["total_flops"]}
        assert s.cost(p) == independent
        fits += budget.fits(independent)
    from netdsl.explore.dryrun import dry_run

    r = dry_run(s)
    assert (r["size"], r["fit"], r["fit"] + r["over_budget"]) == (size, fits, size)
    assert 0 < fits < size
    assert r["cache_hits"] >= size  # the second pass over the same points is answered from the cache


def test_dry_run_cli_prints_the_counts_and_refuses_an_unreachable_budget(spec, capsys):
    assert main(["search", str(spec), "--dry-run", "--budget", "params<=3K", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["size"] == 32 and r["params"]["max"] <= 3000
    assert main(["search", str(spec), "--dry-run", "--budget", "params<=10"]) == 2
    err = capsys.readouterr().err
    assert "no point of the space fits the budget params<=10; the cheapest point has params=" in err
    assert "Traceback" not in err


def test_space_flag_adds_and_narrows_domains(spec):
    s = Space(spec, {"k": "4..12 step 4", "classes": "{10}"})
    assert s.size() == 2 * 3 * 8
    assert "k in 4..12 step 4" in s.describe()


def test_the_same_seed_proposes_the_same_points(spec):
    def proposals(seed: int, sampler: str) -> list[dict]:
        s = Search(SearchConfig(str(spec), seed=seed, sampler=sampler, objectives=["accuracy"]).validate())
        study = optuna.create_study(sampler=s.sampler(), direction="maximize")
        out = []
        for n in range(12):
            trial = study.ask()
            out.append(s.space.sample(trial).values)
            study.tell(trial, float(n % 5))  # the same results both times, so TPE proposes the same
        return out

    for sampler in ("random", "tpe"):
        assert proposals(3, sampler) == proposals(3, sampler)
        assert proposals(3, sampler) != proposals(4, sampler)


def test_trial_spec_is_standalone_canonical_and_compiles_to_the_point(spec, write_spec):
    s = Search(SearchConfig(str(spec)).validate())
    point = next(p for p in s.space.points() if p.values["connect"] == "path(far=2, near=1)")
    text = trial_spec(s.space, point, s.fixed)
    assert " in " not in text.split("{", 1)[0].split("(", 1)[1]  # no domain left in the header
    assert format_text(text) == text
    f = write_spec(text, "trial.net")
    assert compile_spec(str(f)).graph["total_params"] == s.cost(point)["params"]


# ---- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "parms<=1M"], "no cost named 'parms'"),
        (["--budget", "params<=lots"], "cannot read the budget"),
        (["--workers", "0"], "--workers must be 1 or more"),
        (["--space", "k=1..0"], "empty range"),
        (["--space", "depth=1..3"], "has no parameter 'depth'"),
        (["--space", "k=4..8", "--set", "k=4"], "both --set and --space"),
    ],
)
def test_bad_search_input_is_one_message_and_exit_2(spec, capsys, argv, message):
    assert main(["search", str(spec), "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_budget_bounds():
    assert parse_bound("params<=1.2M").value == 1.2e6
    assert parse_bound("flops >= 300M").op == ">="
    assert Budget.parse(["params<=10", "flops>=5"]).broken({"params": 11, "flops": 4}) == ["params<=10", "flops>=5"]


def test_a_corrupt_study_database_is_refused_and_left_as_it_is(spec, tmp_path, capsys):
    out = tmp_path / "search"
    out.mkdir()
    (out / "study.db").write_bytes(b"not a database " * 100)
    (out / "search.json").write_text("{}")
    assert main(["search", str(spec), "--out", str(out), "--resume", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the study storage" in err and "Traceback" not in err
    assert (out / "study.db").read_bytes() == b"not a database " * 100
    assert main(["search", str(spec), "--out", str(out), "--trials", "1"]) == 2  # and never started over
    assert "holds a search already" in capsys.readouterr().err


def test_a_study_of_another_spec_is_refused(spec, write_spec, tmp_path, capsys):
    out = tmp_path / "search"
    other = write_spec(SPEC.replace("k=4 in 4..8 step 4", "k=4 in 4..12 step 4"), "other.net")
    # trials that fail before training (every point refused by the compiler) make a real study quickly
    bad = write_spec(SPEC.replace("k=4 in 4..8 step 4", "k=4 in {0}"), "bad.net")
    assert main(["search", str(bad), "--out", str(out), "--trials", "1", "--no-progress"]) == 0
    capsys.readouterr()
    before = (out / "study.db").read_bytes()
    assert main(["search", str(other), "--out", str(out), "--resume", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "belongs to another spec or space" in err and "Traceback" not in err
    assert (out / "study.db").read_bytes() == before


def test_failed_points_are_recorded_with_their_reason_and_the_study_goes_on(write_spec, tmp_path, capsys):
    bad = write_spec(SPEC.replace("k=4 in 4..8 step 4", "k=4 in {0, -1}"), "bad.net")
    out = tmp_path / "search"
    assert main(["search", str(bad), "--out", str(out), "--trials", "3", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "--show", str(out), "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert [t["state"] for t in trials] == ["FAIL"] * 3
    assert all("the compiler refuses this point" in t["note"] and "bad.net:" in t["note"] for t in trials)
    assert (out / "trials.csv").read_text().count("\n") == 4


def test_points_over_budget_are_never_trained(spec, tmp_path, capsys):
    out = tmp_path / "search"
    rc = main(["search", str(spec), "--out", str(out), "--budget", "params<=10", "--trials", "1", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no point of the space fits the budget params<=10; the cheapest point has params=" in err
    assert not (out / "trials").exists()  # nothing trained


def test_a_search_folder_in_use_is_refused(spec, tmp_path, capsys):
    out = tmp_path / "search"
    with folder_lock(out):
        assert main(["search", str(spec), "--out", str(out), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "another search" in err and "is using this folder" in err


def test_grid_queues_every_point_in_order_and_trains_each_once(write_spec, tmp_path, capsys):
    bad = write_spec(SPEC.replace("k=4 in 4..8 step 4", "k=4 in {0}"), "bad.net")  # refused: no training
    out = tmp_path / "search"
    argv = ["search", str(bad), "--out", str(out), "--sampler", "grid", "--trials", "5", "--no-progress"]
    assert main([*argv, "--space", "blocks={[2, 2]}"]) == 0
    capsys.readouterr()
    assert main(["search", "--show", str(out), "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    asked = [t for t in trials if t["state"] != "WAITING"]
    expected = [p.values for p in Space(bad, {"blocks": "{[2, 2]}"}).points()][:5]
    assert [t["values"] for t in asked] == expected and all(t["state"] == "FAIL" for t in asked)


def test_a_storage_that_cannot_be_reached_is_one_message(spec, tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    assert main(["search", str(spec), "--storage", url, "--out", str(tmp_path / "s"), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the study storage sqlite:///" in err and "Traceback" not in err
    url = "postgresql+psycopg://someone:secret@/db?host=/no/such/socket/dir"
    assert main(["search", str(spec), "--storage", url, "--out", str(tmp_path / "p"), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the study storage postgresql+psycopg://someone:***@" in err and "secret" not in err


def test_netdsl_search_is_the_function_even_after_the_package_is_imported():
    import netdsl.explore.study  # a submodule import must not shadow netdsl.search
    from netdsl.explore import search

    assert netdsl.search is search and callable(netdsl.search)
