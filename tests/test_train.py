"""Training: recipes, exact resume after Ctrl-C, checkpoints, eval, and 2-process DDP on CPU."""

import json
import subprocess
import sys

import pytest
import torch

from netdsl.cli import main
from netdsl.train import TrainConfig, TrainingInterrupted, load_checkpoint, load_recipe, train
from netdsl.train.checkpoint import CheckpointError
from netdsl.train.evaluation import evaluate_checkpoint
from netdsl.train.recipe import RecipeError, available

from helpers import ctrl_c_at

# Native 8x8 grey input: digits needs no resize. BN, dropout and augmentation are all exercised.
TINY = """
network tiny(classes=10) {
    input(1, 8, 8)
    conv(6, 3); bn; relu
    maxpool(2)
    dropout(0.25)
    gap
    fc: linear(classes)
}
"""
# Without batch norm, a DDP step on two halves of a batch is the single-process step on the whole.
NO_BN = """
network nobn(classes=10) {
    input(1, 8, 8)
    conv(8, 3, bias=true); relu
    maxpool(2)
    conv(8, 3, bias=true); relu
    gap
    fc: linear(classes)
}
"""


def _cfg(spec, out, **kw):
    base = dict(epochs=2, batch_size=32, limit_train=96, progress=False, verbose=False, curves=False)
    return TrainConfig(str(spec), out=out, **{**base, **kw})


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bundled_recipes_are_the_papers():
    assert available() == ["dense2net", "densenet", "digits", "seqconv", "sparsenet"]
    d2 = load_recipe("dense2net")
    assert (d2.batch_size, d2.optimizer["nesterov"], d2.schedule["kind"], d2.schedule["patience"]) == (
        128,
        False,
        "plateau",
        10,
    )
    assert (d2.augment["cutout_holes"], d2.augment["cutout_size"], d2.early_stopping) == (1, 8, {"patience": 20})
    sp = load_recipe("sparsenet")
    assert [sp.lr_factor(e, 280) for e in (149, 150, 200, 250)] == [1.0, 0.1, 0.01, 0.002]
    dn = load_recipe("densenet").with_overrides(epochs=8, lr=0.05)
    assert [dn.lr_factor(e, 8) for e in range(8)] == [1.0] * 4 + [0.1] * 2 + [0.01] * 2
    assert dn.optimizer == {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    assert load_recipe("seqconv").spec_params == {"dropout": 0.1}


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(RecipeError) as e:
        load_recipe("densnet")
    assert "densenet" in e.value.hint
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(RecipeError, match=r"mine\.json: unknown field 'epoch'") as e:
        load_recipe(bad)
    assert "'epochs'" in e.value.hint
    bad.write_text("{not json")
    with pytest.raises(RecipeError, match=r"mine\.json: not a JSON recipe"):
        load_recipe(bad)


@pytest.mark.parametrize("recipe, stop_at", [("densenet", (0, 1)), ("dense2net", (0, 2))])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(write_spec, tmp_path, recipe, stop_at):
    """(0, 1): mid-epoch; (0, 2): after the last step of the first epoch (3 steps per epoch)."""
    spec = write_spec(TINY)
    whole = train(_cfg(spec, tmp_path / "whole", recipe=recipe))

    with pytest.raises(TrainingInterrupted):
        train(_cfg(spec, tmp_path / "cut", recipe=recipe), on_step=ctrl_c_at(*stop_at))
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"]) == (stop_at[0], stop_at[1] + 1)
    resumed = train(_cfg(spec, tmp_path / "cut", resume=True))
    assert _same_state(whole["model"].state_dict(), resumed["model"].state_dict())
    rows = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("whole", "cut")]
    strip = [
        [{k: v for k, v in json.loads(r).items() if k not in ("seconds", "images_per_s")} for r in text.splitlines()]
        for text in rows
    ]
    assert strip[0] == strip[1] and len(strip[0]) == 2
    assert whole["best"] == resumed["best"]


def test_checkpoint_layout_and_eval_reproduce_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "densenet_bc100_k12",
            "--set",
            "depth=10",
            "--set",
            "k=4",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--limit-train",
            "64",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "metrics.jsonl",
        "results.json",
        "run.json",
    ]
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["spec"]["target"] == "densenet_bc100_k12"
    assert ckpt["overrides"] == {"depth": "10", "k": "4", "classes": 10}
    assert ckpt["data"]["input"] == [3, 32, 32] and ckpt["data"]["fit"] == "resize"
    assert {"optimizer", "scheduler", "rng", "recipe", "netdsl_version"} <= set(ckpt)
    import netdsl

    model = netdsl.build_model("densenet_bc100_k12", depth=10, k=4)
    model.load_state_dict(ckpt["model"])  # what the ONNX and viz commands read
    results = json.loads((out / "results.json").read_text())
    again = evaluate_checkpoint(out / "best.pt")
    assert again["top1"] == pytest.approx(results["best"]["top1"], abs=1e-9)
    assert again["loss"] == pytest.approx(results["best"]["loss"], rel=1e-5)
    assert again["images"] == 359 and "top5" in again
    capsys.readouterr()
    assert main(["eval", "--weights", str(out / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == again["top1"]
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_checkpoints_are_clear_errors(tmp_path, capsys):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    for name, message in (
        ("foreign.pt", "not a netdsl checkpoint"),
        ("cut.pt", "not a readable checkpoint"),
        ("absent.pt", "no such checkpoint file"),
    ):
        with pytest.raises(CheckpointError, match=f"{name}: {message}"):
            load_checkpoint(tmp_path / name)
        assert main(["eval", "--weights", str(tmp_path / name)]) == 2
        assert "Traceback" not in capsys.readouterr().err
    assert main(["train", "densenet_bc100_k12", "--resume", "--out", str(tmp_path)]) == 2
    assert "last.pt: no such checkpoint file" in capsys.readouterr().err


def test_refusing_a_mismatched_input(tmp_path, capsys):
    code = main(["train", "densenet_bc100_k12", "--set", "depth=10", "--fit", "refuse", "--out", str(tmp_path)])
    assert code == 2
    assert "digits: the data's images are 1x8x8 but the network's input is 3x32x32" in capsys.readouterr().err


DDP_SCRIPT = """
import os, sys, torch
from netdsl.train import TrainConfig, train
spec, out = sys.argv[1], sys.argv[2]
r = train(TrainConfig(spec, out=out, epochs=2, batch_size=32, limit_train=96, progress=False, verbose=False,
                      precision="32"))
torch.save(r["model"].state_dict(), os.path.join(out, "rank%s.pt" % os.environ["RANK"]))
"""


@pytest.mark.slow  # two processes started by torchrun: several seconds
def test_two_process_ddp_on_cpu_equals_one_process_with_the_global_batch(write_spec, tmp_path):
    spec = write_spec(NO_BN)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(spec),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert _same_state(rank0, rank1)  # both processes hold the same network
    assert _same_state(rank0, load_checkpoint(out / "last.pt")["model"])
    single = train(_cfg(spec, tmp_path / "single", precision="32"))["model"].state_dict()
    for k in single:  # gradients averaged over 2 x 16 images == the gradient of 32 (float rounding only)
        torch.testing.assert_close(rank0[k], single[k], rtol=1e-5, atol=1e-6)
    assert json.loads((out / "run.json").read_text())["world_size"] == 2


def test_curves_on_demand_from_the_metrics(tmp_path, capsys):
    rows = [
        {
            "epoch": e,
            "lr": 0.1,
            "train_loss": 1.0 / e,
            "train_acc": 50.0 + e,
            "val_loss": 1.5 / e,
            "val_acc": 40.0 + e,
            "seconds": 1.0,
            "images_per_s": 10.0,
        }
        for e in (1, 2, 3)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--curves", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", "--curves", str(tmp_path / "absent")]) == 2
    assert "metrics.jsonl: no metrics file" in capsys.readouterr().err


def test_resume_with_more_epochs_rescales_the_step_schedule(write_spec, tmp_path):
    spec = write_spec(TINY)
    out = tmp_path / "run"
    train(_cfg(spec, out, recipe="densenet"))  # 2 epochs: lr 0.1, then /10 at epoch 1
    train(_cfg(spec, out, resume=True, epochs=4))  # 4 epochs: /10 at 2, /100 at 3
    lrs = [json.loads(r)["lr"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.001])


# --- one compile per run; the spec travels inside the checkpoint -----------------------------------


def test_a_run_a_resume_and_an_eval_each_compile_the_spec_once(write_spec, tmp_path, count_compiles):
    spec = write_spec(TINY)
    out = tmp_path / "run"

    with pytest.raises(TrainingInterrupted):
        train(_cfg(spec, out, epochs=1), on_step=ctrl_c_at(0, 0))
    assert count_compiles == [str(spec)]
    train(_cfg(spec, out, resume=True))
    evaluate_checkpoint(out / "last.pt")
    assert count_compiles == [str(spec)] * 3


def test_resume_and_eval_use_the_embedded_spec_text_never_the_stored_path(write_spec, tmp_path, capsys):
    spec = write_spec(TINY)
    out = tmp_path / "run"
    first = train(_cfg(spec, out, epochs=1))
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["spec"] == {"target": str(spec), "file": str(spec), "name": "tiny", "preset": None, "text": TINY}
    spec.write_text("network other(classes=10) { input(3, 8, 8); gap; fc: linear(classes) }")  # a changed file
    again = evaluate_checkpoint(out / "best.pt")
    assert again["top1"] == pytest.approx(first["best"]["top1"], abs=1e-9)
    spec.unlink()  # and a missing one
    longer = train(_cfg(spec, out, resume=True, epochs=2))
    assert longer["epochs"] == 2
    # a checkpoint of an older netdsl (a path, no text) is not followed
    from netdsl.train.checkpoint import save_checkpoint

    old = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_checkpoint(
        tmp_path / "old.pt", {**old, "spec": {"target": "/etc/passwd", "file": "/etc/passwd", "name": "tiny"}}
    )
    assert main(["eval", "--weights", str(tmp_path / "old.pt")]) == 2
    err = capsys.readouterr().err
    assert "names its spec by path (/etc/passwd) without its text" in err and "root:" not in err


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_eval_reproduces_the_run_in_its_precision(write_spec, tmp_path, monkeypatch, precision):
    """The checkpoint records the run's precision and ``netdsl eval`` evaluates in it, as Fabric's
    autocast evaluated the run: the figures the run reported come back."""
    from netdsl.train import evaluation

    spec, out = write_spec(TINY), tmp_path / "run"
    first = train(_cfg(spec, out, epochs=1, precision=precision))
    autocast, real = [], evaluation.evaluate

    def evaluate(*args, **kwargs):
        autocast.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", evaluate)
    again = evaluate_checkpoint(out / "best.pt")
    want = {"32": ("32-true", None), "bf16": ("bf16-mixed", torch.bfloat16)}[precision]
    assert (again["precision"], autocast[0]) == want == (load_checkpoint(out / "best.pt")["precision"], autocast[0])
    assert again["loss"] == pytest.approx(first["best"]["loss"], rel=1e-6)
    assert again["top1"] == pytest.approx(first["best"]["top1"], abs=1e-9)


def test_threads_sets_torchs_thread_count(write_spec, tmp_path):
    spec = write_spec(TINY)
    before = torch.get_num_threads()
    try:
        train(_cfg(spec, tmp_path / "run", epochs=1, threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- every flag checked before any work ------------------------------------------------------------

_NO_CUDA = (
    []
    if torch.cuda.is_available()
    else [
        (
            ["train", "t.net", "--device", "cuda"],
            "--device cuda: no CUDA device is available here (use --device cpu or auto)",
        ),
        (
            ["eval", "--weights", "x.pt", "--device", "cuda"],
            "--device cuda: no CUDA device is available here (use --device cpu or auto)",
        ),
    ]
)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "t.net", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["train", "t.net", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["train", "t.net", "--batch-size", "-3"], "--batch-size must be a positive integer, got -3"),
        (["train", "t.net", "--limit-train", "0"], "--limit-train must be a positive integer, got 0"),
        (["train", "t.net", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["train", "t.net", "--devices", "0"], "--devices must be a positive integer, got 0"),
        (["train", "t.net", "--num-nodes", "-1"], "--num-nodes must be a positive integer, got -1"),
        (["train", "t.net", "--lr", "nan"], "--lr must be a finite number above 0, got nan"),
        (["train", "t.net", "--lr", "inf"], "--lr must be a finite number above 0, got inf"),
        (["train", "t.net", "--lr", "0"], "--lr must be a finite number above 0, got 0.0"),
        (["train", "t.net", "--lr", "-0.1"], "--lr must be a finite number above 0, got -0.1"),
        (["train", "t.net", "--val-split", "1"], "--val-split must be in [0, 1), got 1.0"),
        (["train", "t.net", "--seed", "-1"], "--seed must be 0 or more, got -1"),
        (["train", "t.net", "--max-params", "0"], "argument --max-params: must be at least 1, got 0"),
        (["train", "t.net", "--max-nodes", "-5"], "argument --max-nodes: must be at least 1, got -5"),
        (["train", "t.net", "--out", "{tmp}/file/run"], "--out {tmp}/file/run: {tmp}/file is not a folder"),
        (["train", "t.net", "--resume"], "--resume needs --out, the folder of the run to continue"),
        (
            ["train", "t.net", "--resume", "--force", "--out", "{tmp}"],
            "--resume continues the run in --out and --force replaces it: give one",
        ),
        (["train", "t.net", "--resume", "--out", "{tmp}/done"], "the run is finished"),
        (["eval", "--weights", "x.pt", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        *_NO_CUDA,
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(write_spec, tmp_path, capsys, argv, message):
    """Each bad value is refused before any work: nothing is compiled, loaded or written."""
    spec = write_spec(TINY)
    (tmp_path / "file").write_text("x")
    argv = [a.replace("t.net", str(spec)).replace("{tmp}", str(tmp_path)) for a in argv]
    message = message.replace("{tmp}", str(tmp_path))
    if message == "the run is finished":  # not an error: says so and exits 0
        train(_cfg(spec, tmp_path / "done", epochs=1))
        assert main(argv + ["--no-progress"]) == 0
        assert message in capsys.readouterr().out
        return
    listing = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written


# --- the parts of train(), each on its own ----------------------------------------------------------


class _OneProcess:
    """The part of Lightning Fabric a training step uses, for one CPU process."""

    device, global_rank, world_size = torch.device("cpu"), 0, 1

    def __init__(self):
        self.barriers = 0

    def backward(self, loss):
        loss.backward()

    def barrier(self):
        self.barriers += 1


def _stepper(spec, seed=0):
    from netdsl import pipeline
    from netdsl.train import model
    from netdsl.train.data import open_source, prepare_data
    from netdsl.train.loop import Stepper

    recipe = load_recipe("densenet").with_overrides(batch_size=32)
    data = prepare_data(open_source("digits"), (1, 8, 8), fit="resize", val_split=0, seed=seed, limit=96)
    net = model.build_network(pipeline.compile_target(str(spec)), seed)
    return Stepper(_OneProcess(), net, model.make_optimizer(net, recipe), data, recipe, seed)


def test_an_epoch_stopped_and_continued_equals_the_whole_epoch(write_spec):
    from netdsl.train.loop import StopRequested, StopSignal, train_epoch

    spec = write_spec(TINY)
    whole = _stepper(spec)
    row = train_epoch(whole, 0, 1)
    cut = _stepper(spec)
    stop = StopSignal()
    with pytest.raises(StopRequested) as s:
        train_epoch(cut, 0, 1, stop=stop, on_step=lambda e, b: setattr(stop, "requested", True))
    assert s.value.batch == 1 and s.value.partial[2] == 32  # one batch of 32 counted
    again = train_epoch(cut, 0, 1, start_batch=1, partial=s.value.partial)
    timing = ("seconds", "images_per_s")
    assert {k: v for k, v in row.items() if k not in timing} == {k: v for k, v in again.items() if k not in timing}
    assert _same_state(whole.net.state_dict(), cut.net.state_dict())
    assert row["epoch"] == 1 and row["val_loss"] is None and row["lr"] == 0.1


def test_epoch_bookkeeping_best_plateau_and_early_stop():
    from netdsl.train.loop import end_epoch, fresh_state, improves, stops_early
    from netdsl.train.model import make_scheduler

    recipe = load_recipe("dense2net")  # plateau schedule, early stopping after 20, best by val_loss
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_scheduler(opt, recipe)
    state = fresh_state()
    rows = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_acc": 50.0},
        {"epoch": 2, "train_loss": 0.8, "val_loss": 0.7, "val_acc": 50.0},
        {"epoch": 3, "train_loss": 0.7, "val_loss": 0.8, "val_acc": 49.0},
    ]
    assert [end_epoch(state, r, recipe, sched) for r in rows] == [True, True, False]
    assert (state["best"], state["best_epoch"], state["best_loss"]) == (0.7, 2, 0.7)
    assert opt.param_groups[0]["lr"] == 0.1  # the plateau's patience (10) is not used up
    by_acc = {"best": 50.0, "best_loss": 0.7}  # best by val_acc: equal accuracy, the lower loss wins
    assert improves({"val_acc": 50.0, "val_loss": 0.6}, "val_acc", by_acc)
    assert not improves({"val_acc": 50.0, "val_loss": 0.75}, "val_acc", by_acc)
    assert (state["min_val_loss"], state["bad_epochs"]) == (0.7, 1) and not stops_early(state, recipe)
    state["bad_epochs"] = 20
    assert stops_early(state, recipe)


def test_precision_auto_on_a_cpu_follows_the_measured_bf16_step(monkeypatch):
    from netdsl.train import model

    model.cpu_bf16_is_faster.cache_clear()
    assert isinstance(model.cpu_bf16_is_faster(), bool)  # measured once per process
    for faster, chosen in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(model, "cpu_bf16_is_faster", lambda faster=faster: faster)
        assert model.make_fabric("cpu", 1, 1, "auto")[1] == chosen
    assert model.make_fabric("cpu", 1, 1, "32")[1] == "32-true"  # asked for: not measured


def test_the_runs_layout_follows_the_modules_choice_unless_pinned():
    from netdsl import compile_spec
    from netdsl.backends.torch.codegen import generate
    from netdsl.train.model import memory_format

    cpu = torch.device("cpu")
    for pin, fmt in ((None, "channels_last"), (True, "channels_last"), (False, "contiguous_format")):
        graph = compile_spec("densenet_bc100_k12", depth=10, k=4)
        assert memory_format(graph, pin, cpu) == getattr(torch, fmt)  # CPU: the compiler chose channels_last
        assert f"x = x.contiguous(memory_format=torch.{fmt})" in generate(graph)
    graph = compile_spec("densenet_bc100_k12", depth=10, k=4)
    graph.graph["memory_format"] = "preserve"  # a module without a choice: channels_last on CUDA
    assert memory_format(graph, None, cpu) == torch.contiguous_format
    assert memory_format(graph, None, torch.device("cuda")) == torch.channels_last


def test_run_overrides_take_the_datas_classes_and_the_recipes_declared_values():
    from netdsl.train.model import run_overrides

    notes = []
    seq = load_recipe("seqconv")  # sets dropout=0.1 where declared
    assert run_overrides(("classes", "dropout"), {"k": "4"}, 7, seq, notes.append) == {
        "k": "4",
        "classes": 7,
        "dropout": 0.1,
    }
    assert run_overrides(("classes",), {"classes": "3"}, 7, seq, notes.append) == {"classes": "3"}
    assert notes == ["note: recipe seqconv sets dropout=0.1, but the spec declares no parameter 'dropout'"]


def test_reporter_writes_on_rank_0_only_and_checkpointer_waits_for_it(tmp_path):
    from netdsl.train.checkpoint import Checkpointer
    from netdsl.train.report import Reporter

    row = {
        "epoch": 1,
        "lr": 0.1,
        "train_loss": 0.5,
        "train_acc": 90.0,
        "val_loss": None,
        "val_acc": None,
        "seconds": 1.0,
        "images_per_s": 10.0,
    }
    for rank in (1, 0):
        out = tmp_path / f"rank{rank}"
        out.mkdir()
        Reporter(out, rank=rank, verbose=False, curves=False).epoch([row], 3, False)
        net = torch.nn.Linear(2, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        fabric = _OneProcess()
        Checkpointer(
            {"spec": {}, "overrides": {}, "data": {}},
            net,
            opt,
            torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0),
            fabric,
            rank,
        ).save(out / "last.pt", 1, 0, {"finished": True}, [row])
        assert fabric.barriers == 1
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == ["last.pt", "metrics.csv", "metrics.jsonl"]
    assert json.loads((tmp_path / "rank0" / "metrics.jsonl").read_text()) == row
    assert load_checkpoint(tmp_path / "rank0" / "last.pt")["state"] == {"finished": True}


def test_the_api_config_is_checked_like_the_flags():
    from netdsl.train.config import ArgumentError

    for bad, message in (
        (dict(fit="squash"), "--fit must be one of resize, refuse, got 'squash'"),
        (dict(precision="8"), "--precision must be one of auto, 32, bf16, fp16, got '8'"),
        (dict(epochs=True), "--epochs must be a positive integer, got True"),
        (dict(lr=float("-inf")), "--lr must be a finite number above 0, got -inf"),
    ):
        with pytest.raises(ArgumentError) as e:
            TrainConfig("densenet_bc100_k12", **bad).validate()
        assert e.value.message == message
    assert TrainConfig("densenet_bc100_k12").out is None  # a new numbered folder by default
