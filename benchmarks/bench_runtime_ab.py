"""Interleaved A/B of the torch runtime helpers (netdsl/backends/torch/runtime.py): densenet_bc100_k12
generated once, run with the helpers of a git revision ("old", --base, default HEAD) and of this
checkout ("new"), against the hand-written reference, all channels_last, weights shared by old and
new. Rounds alternate their order; medians of per-round ratios of wall time and of CPU time
(--threads 1: the main thread's CPU time, which a loaded machine's descheduling does not inflate;
CPU autograd runs on the calling thread). --profile: one step each under torch.profiler, the
self-CPU ms of the top ops side by side. --whole: "old" is the whole file the base revision's
netdsl generates (its code generator too, from a git worktree), not this file with old helpers.

    python benchmarks/bench_runtime_ab.py --mode train --prec bf16 --batch 8 --rounds 5 --threads 1
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from bench_codegen import _runner  # eval (no_grad) or an SGD step, under the precision's autocast
from reference_densenet import DenseNet

import netdsl

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train", choices=("train", "eval"))
p.add_argument("--prec", default="bf16", choices=("bf16", "fp32"))
p.add_argument("--batch", type=int, default=16)
p.add_argument("--rounds", type=int, default=7)
p.add_argument("--base", default="HEAD")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--profile", action="store_true")
p.add_argument("--nchw", action="store_true", help="feed NCHW input to netdsl (the default module)")
p.add_argument("--whole", action="store_true", help="old: the base revision's whole generated file")
a = p.parse_args()
torch.set_num_threads(a.threads)
CL = torch.channels_last
src = netdsl.torch_source("densenet_bc100_k12")
old_rt = subprocess.run(
    ["git", "-C", str(ROOT), "show", f"{a.base}:netdsl/backends/torch/runtime.py"],
    capture_output=True,
    text=True,
    check=True,
).stdout
old_rt = old_rt.replace("from ...ops.norm import bn_scale_shift, fold_into_conv", "")


def base_source() -> str:
    """BC-100's file as the base revision's netdsl writes it (a temporary git worktree)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", tmp, a.base], check=True)
        try:
            code = "import netdsl; print(netdsl.torch_source('densenet_bc100_k12'), end='')"
            run = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True, text=True, check=True)
            return run.stdout
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], check=True)


def load(source, extra=None, name="gen"):
    ns = {"__name__": name}
    exec(compile(source, name, "exec"), ns)
    if extra:
        exec(compile(extra, name + "_rt", "exec"), ns)
    return ns["build"]()


torch.manual_seed(0)
new = load(src, name="gen_new")
old = load(base_source(), name="gen_old") if a.whole else load(src, old_rt, "gen_old")
old.load_state_dict(new.state_dict())
ref = DenseNet([16, 16, 16], 12, 10, imagenet=False).to(memory_format=CL)
models = {"old": old, "new": new, "ref": ref}
x = torch.randn(a.batch, 3, 32, 32)
y = torch.randint(0, 10, (a.batch,))
xcl = x.to(memory_format=CL)
fns = {k: _runner(m, a.mode, x if (a.nchw and k != "ref") else xcl, y, a.prec) for k, m in models.items()}
if a.profile:
    from torch.profiler import profile

    for f in fns.values():
        f()
        f()
    res = {}
    for k, f in fns.items():
        with profile() as p:
            f()
        res[k] = {e.key: e.self_cpu_time_total / 1e3 for e in p.key_averages()}
        res[k]["TOTAL"] = sum(e.self_cpu_time_total for e in p.key_averages()) / 1e3
    keys = sorted(set().union(*res.values()), key=lambda q: -max(r.get(q, 0) for r in res.values()))[:22]
    print(f"{'op (self CPU ms)':42s}" + "".join(f"{k:>10s}" for k in fns))
    for q in keys:
        print(f"{q[:42]:42s}" + "".join(f"{res[k].get(q, 0):10.1f}" for k in fns))
    sys.exit()
for f in fns.values():
    f()
    f()
wall = {k: [] for k in fns}
cpu = {k: [] for k in fns}
for r in range(a.rounds):
    for k, f in list(fns.items())[:: 1 if r % 2 == 0 else -1]:
        t0, c0 = time.perf_counter(), (time.thread_time() if a.threads == 1 else time.process_time())
        f()
        wall[k].append(time.perf_counter() - t0)
        cpu[k].append((time.thread_time() if a.threads == 1 else time.process_time()) - c0)
w = {k: statistics.median(v) for k, v in wall.items()}
c = {k: statistics.median(v) for k, v in cpu.items()}


def rr(d, p, q):
    """The median over rounds of p's time / q's time in the same round."""
    return statistics.median([d[p][i] / d[q][i] for i in range(a.rounds)])


print(f"{a.mode} {a.prec} b{a.batch} rounds={a.rounds} base={a.base} nchw={a.nchw}")
for k in fns:
    print(f"  {k:4s} wall {w[k] * 1e3:8.1f} ms  cpu {c[k] * 1e3:8.1f} ms")
for p_, q_ in (("new", "old"), ("new", "ref"), ("old", "ref")):
    print(f"  {p_}/{q_}: wall {rr(wall, p_, q_):.3f}  cpu {rr(cpu, p_, q_):.3f}")
