"""Interleaved A/B of one compiler decision: DenseNet-BC-100's transitions pooling before their
1x1 conv (``netdsl.ir.plan.pool_before_conv``, "new") against the order the spec writes (conv,
then pool: "old", the decision switched off while that module is generated), and the
hand-written reference. Both netdsl modules share their weights and are called on NCHW input
(their layout is their own choice); the reference runs in the layout given by --ref-layout.
Medians of per-round ratios, the order alternating between rounds.

    python benchmarks/bench_pool_first.py --mode train --prec fp32 --rounds 7 --ref-layout cl
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from bench_codegen import _runner, interleaved_times  # this folder's benchmark helpers
from reference_densenet import DenseNet

import netdsl
import netdsl.ir.plan
import netdsl.passes.plan_concat

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train", choices=("train", "eval"))
p.add_argument("--prec", default="fp32", choices=("bf16", "fp32"))
p.add_argument("--batch", type=int, default=64)
p.add_argument("--rounds", type=int, default=7)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ref-layout", default="cl", choices=("cl", "nchw"))
a = p.parse_args()
torch.set_num_threads(a.threads)

torch.manual_seed(0)
new = netdsl.build_model("densenet_bc100_k12")
decide = netdsl.ir.plan.pool_before_conv
netdsl.ir.plan.pool_before_conv = netdsl.passes.plan_concat.pool_before_conv = lambda graph, conv: None
try:
    old = netdsl.build_model("densenet_bc100_k12")
finally:
    netdsl.ir.plan.pool_before_conv = netdsl.passes.plan_concat.pool_before_conv = decide
old.load_state_dict(new.state_dict())
ref = DenseNet([16, 16, 16], 12, 10, imagenet=False)
fmt = torch.channels_last if a.ref_layout == "cl" else torch.contiguous_format
ref = ref.to(memory_format=fmt)
x, y = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
fns = {
    "old": _runner(old, a.mode, x, y, a.prec),
    "new": _runner(new, a.mode, x, y, a.prec),
    "ref": _runner(ref, a.mode, x.contiguous(memory_format=fmt), y, a.prec),
}
times = interleaved_times(fns, a.rounds)
ms = {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items()}
ratio = statistics.median(n / o for n, o in zip(times["new"], times["old"], strict=True))
print(f"{a.mode} {a.prec} b{a.batch}, medians (ms): {ms}")
print(f"new/old {ratio:.3f}  new/ref {ms['new'] / ms['ref']:.3f}  old/ref {ms['old'] / ms['ref']:.3f}")
