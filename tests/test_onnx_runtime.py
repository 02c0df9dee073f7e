"""Running exported models: the CLI (`netdsl compile --target onnx`, `netdsl run`), weights
flowing from a checkpoint into the graph, the provider choice and the thread settings.

The CLI runs in-process (``netdsl.cli.main``); one slow test runs compile and run as real processes."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netdsl
from netdsl import onnx_runtime
from netdsl.api import onnx_model
from netdsl.backends.onnx.emit import ONNX_OPS
from netdsl.cli import main
from netdsl.ir.ops import OP_KINDS
from netdsl.naming import checked_onnx_name
from netdsl.onnx_runtime import run, session, session_options

SMALL = ["densenet_bc100_k12", "--set", "depth=10", "--set", "k=4"]


@pytest.fixture
def netdsl_cli(capsys):
    """``netdsl ARGS`` in-process, returning what a finished process would: returncode, stdout, stderr."""

    def cli(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return cli


def netdsl_process(*args):
    return subprocess.run([sys.executable, "-m", "netdsl", *map(str, args)], capture_output=True, text=True)


def test_every_op_kind_has_an_onnx_entry():
    assert set(ONNX_OPS) == set(OP_KINDS)


@pytest.mark.parametrize("bad", ["a/b", "1x", "a..b", "", "x y", "a.b/"])
def test_names_reaching_onnx_are_checked(bad):
    with pytest.raises(netdsl.NetdslError, match="not a dotted identifier"):
        checked_onnx_name(bad)
    assert checked_onnx_name("block1.unit3.conv1") == "block1.unit3.conv1"


def test_model_header_names_and_metadata():
    model = onnx_model(
        "densenet_bc100_k12", depth=10, k=4, weights=netdsl.build_model("densenet_bc100_k12", depth=10, k=4)
    )
    assert model.ir_version == 9 and model.opset_import[0].version == 20
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["netdsl.preset"] == "densenet_bc100_k12" and meta["netdsl.spec"] == "densenet_bc.net"
    assert json.loads(meta["netdsl.params"])["depth"] == 10 and meta["netdsl.version"] == netdsl.__version__
    g = netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4, opt=0)
    names = {n.name for n in model.graph.node}
    # every ONNX node is an IR node id or a helper '<id>/<part>'; the surviving ops keep their ids
    assert all(n.split("/")[0] in g for n in names)
    assert {"stem", "block1.unit1.conv1", "block1.cat", "transition1.avgpool1", "head1.fc"} <= names
    # a transition pools before its 1x1 conv (ir.plan.pool_before_conv); the conv gives the pool's value
    nodes = {n.name: n for n in model.graph.node}
    assert list(nodes).index("transition1.avgpool1") < list(nodes).index("transition1.conv1")
    assert nodes["transition1.conv1"].input[0] == nodes["transition1.avgpool1"].output[0] == "transition1.conv1/pooled"
    assert nodes["transition1.conv1"].output[0] == "transition1.avgpool1"
    dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 10]


def test_weights_flow_from_a_checkpoint(tmp_path, netdsl_cli):
    trained = netdsl.build_model("densenet_bc100_k12", seed=7, opt=0, depth=10, k=4).eval()
    with torch.no_grad():
        for m in trained.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    torch.save(trained.state_dict(), tmp_path / "sd.pt")
    torch.save({"model": trained.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    for name, weights in (("a", "sd.pt"), ("b", "ckpt.pt"), ("c", None)):
        extra = ["--weights", tmp_path / weights] if weights else []
        r = netdsl_cli("compile", *SMALL, "--target", "onnx", "-o", tmp_path / f"{name}.onnx", *extra)
        assert r.returncode == 0, r.stderr
        assert ("untrained" in r.stderr) == (weights is None)
        assert "Concat nodes copying" in r.stderr
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    outs = {k: run(session(tmp_path / f"{k}.onnx", device="cpu"), x) for k in "abc"}
    with torch.no_grad():
        ref = trained(torch.from_numpy(x)).numpy()
    assert np.abs(outs["a"] - ref).max() <= 1e-4
    assert np.array_equal(outs["a"], outs["b"])
    assert np.abs(outs["c"] - outs["a"]).max() > 1e-2  # other weights, other output
    meta = {p.key: p.value for p in onnx.load(tmp_path / "a.onnx").metadata_props}
    assert meta["netdsl.weights"].endswith("sd.pt")


def test_mismatched_or_bad_weights_are_one_error(tmp_path, netdsl_cli):
    torch.save(netdsl.build_model("densenet_bc100_k12", opt=0, depth=10, k=6).state_dict(), tmp_path / "k6.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for f, msg in (("k6.pt", "not fit 'densenet_bc'"), ("junk.pt", "cannot read weights"), ("none.pt", "no such file")):
        r = netdsl_cli("compile", *SMALL, "--target", "onnx", "-o", tmp_path / "m.onnx", "--weights", tmp_path / f)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_run_command_summarizes_output(tmp_path, netdsl_cli):
    r = netdsl_cli("compile", *SMALL, "--target", "onnx", "-o", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = netdsl_cli("run", tmp_path / "m.onnx", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (3, 10)
    assert np.array_equal(y, run(session(tmp_path / "m.onnx", device="cpu"), x))
    assert "provider: CPUExecutionProvider" in r.stdout and "output: shape (3, 10), float32" in r.stdout
    assert f"top class per sample: {int(y[0].argmax())} " in r.stdout
    r = netdsl_cli("run", tmp_path / "m.onnx", "--batch", "2")
    assert r.returncode == 0 and "input: shape (2, 3, 32, 32) (random, seed 0)" in r.stdout
    np.save(tmp_path / "bad.npy", x[:, :, :16])
    for args, msg in (
        ([tmp_path / "m.onnx", "--input", tmp_path / "bad.npy"], "does not fit"),
        ([tmp_path / "none.onnx"], "no such file"),
        ([tmp_path / "x.npy"], "cannot load the model"),
    ):
        r = netdsl_cli("run", *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_compile_and_run_as_processes(tmp_path):
    r = netdsl_process("compile", *SMALL, "--target", "onnx", "-o", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    assert "untrained" in r.stderr and "Concat nodes copying" in r.stderr
    r = netdsl_process("run", tmp_path / "m.onnx", "--batch", "2")
    assert r.returncode == 0, r.stderr
    assert "input: shape (2, 3, 32, 32) (random, seed 0)" in r.stdout and "output: shape (2, 10), float32" in r.stdout
    r = netdsl_process("run", tmp_path / "none.onnx")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_threads_do_not_spin():
    so = session_options(threads=1)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 1


def test_auto_falls_back_to_cpu_quietly_when_cuda_does_not_load(monkeypatch, capfd, tmp_path):
    """An onnxruntime-gpu install lists CUDA even where it cannot load; here (a CPU build) asking
    for CUDA fails the same way. 'auto' must end on the CPU and print nothing."""
    model = onnx_model(
        "densenet_bc100_k12", depth=10, k=4, weights=netdsl.build_model("densenet_bc100_k12", depth=10, k=4)
    )
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    capfd.readouterr()
    sess = session(model.SerializeToString(), device="auto")
    assert sess.get_providers() == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.capi._pybind_state.get_available_providers():
        with pytest.raises(netdsl.NetdslError, match="CUDA execution provider is not available"):
            session(model.SerializeToString(), device="cuda")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert sess.get_providers()[0] == onnx_runtime.CPU
