"""The generated torch module against a hand-written DenseNet-BC-100 (``torch.cat`` per layer,
benchmarks/reference_densenet.py), side by side in ONE process, rounds interleaved, medians.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python benchmarks/bench_codegen.py --threads 2
    python benchmarks/bench_codegen.py --cases eval64 train64 --no-compile     # eager rows only

The allocator moves the training ratios (docs/performance.md): jemalloc's default decay hands
freed pages back to the kernel, and page faults can then dominate a step; add
``MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`` to keep them, as torch's CUDA caching
allocator does. The header line names the allocator in use.

Cases: eval at batch 64 and 1 (no_grad), a training step at batch 64 (forward, backward, SGD),
each eager and under torch.compile (inductor); cold compile time (first call, fresh dynamo);
training activation memory (bytes autograd saves, netdsl.backends.torch.bench.saved_bytes);
sparsenet_bc_v1's training step against its own --opt 0; achieved GFLOP/s against this
machine's conv peak (one large 3x3 conv). Prints a markdown table of ratios (netdsl / reference).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

# torch says so once per cold compile: its profile-guided recompilation is off with the caches
warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_densenet import DenseNet

import netdsl
from netdsl.backends.torch.bench import allocator, saved_bytes
from netdsl.progress import TaskProgress


def _sgd_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _runner(model, case, x, y):
    if case.startswith("eval"):
        model.eval()

        def run():
            with torch.no_grad():
                model(x)

        return run
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return lambda: _sgd_step(model, opt, x, y)


def interleaved(fns: dict, rounds: int, warmup: int = 2) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for r in range(rounds):
        # the order alternates (A B, B A, ...): on this VM the model run first in a round is
        # sometimes measurably faster or slower (allocator and cache state)
        for k, fn in list(fns.items())[:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def conv_peak_gflops(threads: int) -> float:
    """GFLOP/s (1 MAC = 2 FLOP here, the hardware convention) of one large 3x3 conv."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(32, 256, 28, 28)
    with torch.no_grad():
        t = interleaved({"c": lambda: conv(x)}, 5)["c"]
    return 2 * 32 * 256 * 256 * 9 * 28 * 28 / t / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cases", nargs="*", default=["eval64", "eval1", "train64"])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--sparsenet", action="store_true", help="also sparsenet_bc_v1 train step vs its --opt 0")
    ap.add_argument("--netdsl-cl", action="store_true", help="netdsl's model and input in channels_last")
    ap.add_argument("--ref-cl", action="store_true", help="the reference's model and input in channels_last")
    ap.add_argument(
        "--ref-cp", action="store_true", help="the reference with torch.utils.checkpoint (memory_efficient)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    planned = netdsl.build_model("densenet_bc100_k12")
    ref = DenseNet([16, 16, 16], 12, 10, imagenet=False, memory_efficient=args.ref_cp)
    if args.netdsl_cl:
        planned = planned.to(memory_format=cl)
    if args.ref_cl:
        ref = ref.to(memory_format=cl)

    def inputs(batch):
        x = torch.randn(batch, 3, 32, 32)
        xn = x.to(memory_format=cl) if args.netdsl_cl else x
        xr = x.to(memory_format=cl) if args.ref_cl else x
        return xn, xr

    flops = netdsl.compile_spec("densenet_bc100_k12").graph["total_flops"]
    rows = []
    with TaskProgress("bench_codegen", len(args.cases)) as bar:  # a bar on a terminal, nothing in a pipe
        for case in args.cases:
            bar.advance(0, case)
            batch = int(case.removeprefix("eval").removeprefix("train"))
            xn, xr = inputs(batch)
            y = torch.randint(0, 10, (batch,))
            fns = {"netdsl": _runner(planned, case, xn, y), "reference": _runner(ref, case, xr, y)}
            t = interleaved(fns, args.rounds)
            gflops = (flops * batch * (3 if case.startswith("train") else 1)) * 2 / t["netdsl"] / 1e9
            rows.append((f"{case} eager", t["netdsl"], t["reference"], gflops))
            if not args.no_compile:
                torch._dynamo.reset()
                cm, cr = torch.compile(copy.deepcopy(planned)), torch.compile(copy.deepcopy(ref))
                cold = {}
                for name, m, x in (("netdsl", cm, xn), ("reference", cr, xr)):
                    fn = _runner(m, case, x, y)
                    # cold: inductor's on-disk caches off, or a graph compiled in an earlier run
                    # would load in seconds
                    with torch._inductor.config.patch(force_disable_caches=True):
                        t0 = time.perf_counter()
                        fn()
                        cold[name] = time.perf_counter() - t0
                t = interleaved(
                    {"netdsl": _runner(cm, case, xn, y), "reference": _runner(cr, case, xr, y)}, args.rounds
                )
                rows.append((f"{case} compiled", t["netdsl"], t["reference"], None))
                rows.append((f"{case} cold compile", cold["netdsl"], cold["reference"], None))
            bar.advance(1)
    if any(c.startswith("train") for c in args.cases):
        xn, xr = inputs(64)
        mem = {"netdsl": saved_bytes(planned.train(), xn), "reference": saved_bytes(ref.train(), xr)}
        rows.append(("train64 activation memory (MiB)", mem["netdsl"] / 2**20, mem["reference"] / 2**20, None))
    if args.sparsenet:
        sp, naive = netdsl.build_model("sparsenet_bc_v1"), netdsl.build_model("sparsenet_bc_v1", opt=0)
        x = torch.randn(64, 3, 32, 32)
        y = torch.randint(0, 10, (64,))
        t = interleaved({"netdsl": _runner(sp, "train", x, y), "reference": _runner(naive, "train", x, y)}, args.rounds)
        rows.append(("sparsenet_bc_v1 train64 vs its --opt 0", t["netdsl"], t["reference"], None))
    peak = conv_peak_gflops(args.threads)
    names = {True: "channels_last", False: "NCHW"}
    layout = f"netdsl {names[args.netdsl_cl]}, reference {names[args.ref_cl]}"
    ref_kind = "checkpointed (memory_efficient)" if args.ref_cp else "torch.cat per layer"
    print(
        f"threads={args.threads}, rounds={args.rounds}, torch {torch.__version__}, conv peak {peak:.1f} GFLOP/s, "
        f"{layout}, reference {ref_kind}, allocator {allocator()}\n"
    )
    print("| case | netdsl | reference | ratio | netdsl GFLOP/s (of peak) |")
    print("|---|---|---|---|---|")
    for name, a, b, gf in rows:
        unit = "" if "MiB" in name else " s"
        fmt = (lambda v: f"{v:.1f}") if "MiB" in name else (lambda v: f"{v:.4f}")
        frac = f"{gf:.1f} ({gf / peak:.0%})" if gf else ""
        print(f"| {name} | {fmt(a)}{unit} | {fmt(b)}{unit} | {a / b:.2f}x | {frac} |")


if __name__ == "__main__":
    main()
