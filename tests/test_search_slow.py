"""netdsl search with real trials (slow): a search trained end to end, kill -9 and --resume, two
workers on one SQLite file, two processes on one PostgreSQL server, Ctrl-C."""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

import netdsl
from netdsl.explore.folder import STUDY_NAME, default_storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SPEC = """include "lib/densenet.net"

network s(blocks=[2, 2] in {[1, 1], [2, 2]}, k=4 in 4..8 step 2,
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
TINY = ["--epochs", "1", "--limit-train", "128", "--batch-size", "32", "--device", "cpu", "--no-curves"]


def netdsl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "netdsl", *args]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def spec(tmp_path) -> Path:
    p = tmp_path / "s.net"
    p.write_text(SPEC)
    return p


def study_of(out: Path, url: str | None = None):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY_NAME, storage=url or default_storage(out))


def test_a_search_trains_its_trials_as_run_folders(spec, tmp_path):
    out = tmp_path / "search"
    study = netdsl.search(
        spec, trials=3, out=out, seed=1, budget=["params<=20K"], objectives=["accuracy", "flops"], **_kw()
    )
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 3
    for t in done:
        run = Path(t.user_attrs["run"])
        assert run.name == f"trial-{t.number:04d}"
        assert {"last.pt", "metrics.jsonl", "results.json", "run.json", "s.net"} <= {p.name for p in run.iterdir()}
        # the trial's spec is standalone: compiled alone it has the costs the study recorded
        g = netdsl.compile_spec(str(run / "s.net"))
        assert g.graph["total_params"] == t.user_attrs["params"] <= 20_000
        assert g.graph["total_flops"] == t.user_attrs["flops"] == t.values[1]
        assert t.values[0] == max(r["val_acc"] for r in map(json.loads, (run / "metrics.jsonl").open()))
    shown = subprocess.run(
        netdsl_cmd("search", "--show", str(out), "--json"), env=env(), capture_output=True, text=True, check=True
    ).stdout
    rows = json.loads(shown)["trials"]
    assert [r["number"] for r in rows] == [t.number for t in study.trials]
    assert any(r["front"] for r in rows)
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
    assert (out / "trials.csv").read_text().splitlines()[0].startswith("number,state,blocks,connect,k,")


def _kw() -> dict:
    return {"epochs": 1, "limit_train": 128, "batch_size": 32, "accelerator": "cpu", "curves": False}


def test_kill_9_and_resume_lose_no_finished_trial_and_rerun_the_interrupted_one(spec, tmp_path):
    out = tmp_path / "search"
    args = ["search", str(spec), "--out", str(out), "--trials", "3", "--seed", "2", "--sampler", "random"]
    longer = [a if a != "1" else "3" for a in TINY]  # 3 epochs: time to kill a trial while it trains
    proc = subprocess.Popen(netdsl_cmd(*args, *longer), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not (out / "trials" / "trial-0001" / "run.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = {t.number: t for t in study_of(out).trials}
    assert before[0].state.name == "COMPLETE"
    running = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert running == [1], {n: t.state.name for n, t in before.items()}
    res = subprocess.run(netdsl_cmd(*args, "--resume", *TINY), env=env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "1 interrupted trial(s) queued again" in res.stderr
    after = study_of(out).trials
    assert after[0].values == before[0].values and after[0].params == before[0].params  # kept as it was
    assert after[1].state.name == "FAIL" and after[1].user_attrs["interrupted"]
    rerun = [t for t in after if t.user_attrs.get("rerun_of") == 1]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == before[1].params
    counted = [t for t in after if not t.user_attrs.get("interrupted")]
    assert len(counted) == 3 and all(t.state.name == "COMPLETE" for t in counted)


def test_two_workers_on_one_sqlite_file_record_each_trial_once(spec, tmp_path):
    out = tmp_path / "search"
    res = subprocess.run(
        netdsl_cmd(
            "search", str(spec), "--out", str(out), "--trials", "4", "--workers", "2", "--sampler", "random", *TINY
        ),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    trials = study_of(out).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]  # four asked, none twice, none lost
    assert all(t.state.name == "COMPLETE" for t in trials)
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(runs)) == 4 and all((Path(r) / "results.json").is_file() for r in runs)


def test_ctrl_c_keeps_finished_trials_marks_the_interrupted_one_and_releases_the_lock(spec, tmp_path):
    out = tmp_path / "search"
    args = ["search", str(spec), "--out", str(out), "--trials", "3", "--sampler", "random"]
    longer = [a if a != "1" else "3" for a in TINY]
    proc = subprocess.Popen(netdsl_cmd(*args, *longer), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out / "trials" / "trial-0001" / "run.json").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted: the finished trials are kept" in err and b"Traceback" not in err
    trials = study_of(out).trials
    assert trials[0].state.name == "COMPLETE"
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs["interrupted"]
    res = subprocess.run(netdsl_cmd(*args, "--resume", *TINY), env=env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr  # the lock was released
    assert sum(1 for t in study_of(out).trials if t.state.name == "COMPLETE") == 3


# ---- PostgreSQL: the documented storage for many machines ---------------------------------------
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@contextlib.contextmanager
def postgres(tmp_path: Path):
    """A throwaway PostgreSQL server on a unix socket in ``tmp_path`` (no TCP port); yields its URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's initdb/pg_ctl are missing; .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl)")
    pytest.importorskip("psycopg") if not os.environ.get("CI") else __import__("psycopg")
    as_user: list[str] = []
    # initdb refuses root: as root, the server runs as the postgres (or nobody) user, in a folder of
    # its own (pytest's tmp_path is private to root)
    home = Path(tempfile.mkdtemp(prefix="netdsl-pg-")) if os.getuid() == 0 else tmp_path
    if os.getuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        os.chown(home, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    data, sock = home / "pgdata", home / "sock"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run([*as_user, "mkdir", "-p", str(sock)])
    run([*as_user, initdb, "-D", str(data), "-U", "netdsl", "--auth=trust", "-E", "UTF8"])
    opts = f"-c listen_addresses='' -c unix_socket_directories='{sock}' -c max_connections=50"
    run([*as_user, pg_ctl, "-D", str(data), "-o", opts, "-w", "-l", str(home / "pg.log"), "start"])
    try:
        yield f"postgresql+psycopg://netdsl@/postgres?host={sock}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        if home != tmp_path:
            shutil.rmtree(home, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_two_processes_share_one_study_on_postgresql(spec, tmp_path):
    with postgres(tmp_path) as url:
        procs = [
            subprocess.Popen(
                netdsl_cmd(
                    "search",
                    str(spec),
                    "--storage",
                    url,
                    "--out",
                    str(tmp_path / f"host{h}"),
                    "--trials",
                    "4",
                    "--sampler",
                    "random",
                    "--seed",
                    str(h),
                    *TINY,
                ),
                env=env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for h in (1, 2)
        ]
        errs = [p.communicate(timeout=600)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        trials = study_of(tmp_path, url).trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(numbers)))  # every trial recorded once: none twice, none lost
    # both machines worked on the one study; each trial's run folder is on the machine that ran it
    runs = [Path(t.user_attrs["run"]) for t in trials if t.state.name == "COMPLETE"]
    assert len(set(runs)) == len(runs) and {r.parent.parent.name for r in runs} == {"host1", "host2"}
    # no machine-wide ask lock spans hosts: each stops once the study holds 4 trials, so at most
    # one trial per extra host is started past --trials
    assert 4 <= len(runs) <= 5 and all((r / "results.json").is_file() for r in runs)


def test_report_search_scatter_renders_in_headless_chromium(spec, tmp_path):
    """`netdsl report --search DIR`: the scatter laid out in Chromium, one point per complete trial,
    the front drawn, and a point's link opening its trial's values and connectivity matrix."""
    import browser
    from selenium.webdriver.common.by import By

    assert browser.available(), "install Debian's chromium and chromium-driver (.ci/run does)"
    out = tmp_path / "search"
    study = netdsl.search(spec, trials=3, out=out, seed=5, sampler="random", **_kw())
    done = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    page = tmp_path / "s.html"
    res = subprocess.run(
        netdsl_cmd("report", "--search", str(out), "-o", str(page)), env=env(), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    driver = browser.chromium(1280, 900)
    try:
        driver.get(page.as_uri())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        boxes = {b[0]: b for b in driver.execute_script(browser.SVG_BOXES)}
        assert boxes["search"][1] > 300 and boxes["search"][2] > 200
        circles = driver.find_elements(By.CSS_SELECTOR, "#search circle.trial")
        assert len(circles) == len(done)
        assert driver.find_elements(By.CSS_SELECTOR, "#search polyline.front")
        links = driver.find_elements(By.CSS_SELECTOR, "#search a")
        target = links[0].get_dom_attribute("href").split("#")[1]  # an SVG link: its attribute, as written
        assert target.startswith("search-trial-")
        details = driver.find_element(By.ID, target)
        assert details.tag_name == "details" and details.find_elements(By.CSS_SELECTOR, "svg")
        assert driver.save_screenshot(str(tmp_path / "search.png"))
    finally:
        driver.quit()


def test_a_nan_loss_fails_the_trial_with_its_reason_and_the_study_goes_on(spec, tmp_path):
    study = netdsl.search(spec, trials=2, out=tmp_path / "search", sampler="random", lr=1e12, **_kw())
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all("training diverged: the loss is nan after epoch 1" in t.user_attrs["reason"] for t in study.trials)
