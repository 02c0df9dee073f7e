"""The generated torch module against a hand-written DenseNet-BC-100 (``torch.cat`` per layer,
benchmarks/reference_densenet.py), side by side in ONE process, rounds interleaved, medians, each
model in both layouts (NCHW and channels_last) and in one precision (fp32, or bf16 autocast).

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python benchmarks/bench_codegen.py --threads 2
    python benchmarks/bench_codegen.py --precision bf16 --cases eval64 train64 --no-compile --rss

The allocator moves the training ratios (docs/performance.md): jemalloc's default decay hands
freed pages back to the kernel, and page faults can then dominate a step; add
``MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`` to keep them, as torch's CUDA caching
allocator does. The header line names the allocator in use.

Variants, eager: netdsl's default module called on an NCHW tensor (the layout, and under autocast
the precision, are then the compiler's choice), netdsl pinned to NCHW (where the module takes a
``memory_format`` option), netdsl moved to channels_last with a channels_last input, and under
autocast netdsl pinned to follow it (``precision="autocast"``: bf16 convolutions even where this
CPU has no fast kernel for them); the reference in NCHW and in channels_last. Ratios: best vs
best (each side's fastest variant), same layout (NCHW / channels last), and the default module
on NCHW vs the reference's best. Compiled (inductor) runs each
side's fastest eager layout. Cases: eval at batch 64 and 1 (no_grad), a training step at batch 64
(forward and loss under autocast for bf16, backward, SGD); cold compile time; training
activation memory (bytes autograd saves); ``--rss``: peak RSS growth over two training steps,
each model in a fresh process; achieved GFLOP/s as a fraction of this machine's conv peak in
that precision (one large 3x3 conv, the faster of its two layouts).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

# torch says so once per cold compile: its profile-guided recompilation is off with the caches
warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's netdsl, not an installed one

from reference_densenet import DenseNet

import netdsl
import netdsl.errors
from netdsl.backends.torch.bench import allocator, saved_bytes
from netdsl.progress import TaskProgress

CL = torch.channels_last
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def _autocast(precision: str):
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast("cpu", dtype=dtype)


def _sgd_step(model, opt, x, y, precision):
    opt.zero_grad(set_to_none=True)
    with _autocast(precision):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def _runner(model, case, x, y, precision="fp32"):
    if case.startswith("eval"):
        model.eval()

        def run():
            with torch.no_grad(), _autocast(precision):
                model(x)

        return run
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return lambda: _sgd_step(model, opt, x, y, precision)


def interleaved(fns: dict, rounds: int, warmup: int = 2) -> dict:
    return {k: statistics.median(v) for k, v in interleaved_times(fns, rounds, warmup).items()}


def interleaved_times(fns: dict, rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Each function's time in each round (seconds), after ``warmup`` calls each."""
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
    return times


def conv_peak_gflops(threads: int, precision: str = "fp32") -> float:
    """GFLOP/s (1 MAC = 2 FLOP here, the hardware convention) of one large 3x3 conv in
    ``precision`` (bf16: under autocast), the faster of NCHW and channels_last."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(32, 256, 28, 28)
    convs = {"nchw": (conv, x), "cl": (copy.deepcopy(conv).to(memory_format=CL), x.to(memory_format=CL))}

    def fn(c, inp):
        def run():
            with torch.no_grad(), _autocast(precision):
                c(inp)

        return run

    t = min(interleaved({k: fn(c, inp) for k, (c, inp) in convs.items()}, 5).values())
    return 2 * 32 * 256 * 256 * 9 * 28 * 28 / t / 1e9


def _netdsl(**pins):
    """The generated module; ``pins`` (memory_format, precision) pin its decisions (none: the compiler's)."""
    try:
        return netdsl.build_model("densenet_bc100_k12", **pins)
    except (TypeError, netdsl.errors.NetdslError):  # a netdsl without the option
        return None


def _models(ref_cp: bool, pin: bool, precision: str = "fp32") -> dict:
    """name -> (model, layout of its input), both models in both layouts; under autocast also
    netdsl pinned to follow it (on a CPU without oneDNN's bf16 kernels the default runs float32)."""
    torch.manual_seed(0)
    default = _netdsl()
    ref = DenseNet([16, 16, 16], 12, 10, imagenet=False, memory_efficient=ref_cp)
    models = {"netdsl": (default, "nchw")}
    pinned = _netdsl(memory_format="contiguous") if pin else None
    if pinned is not None:
        models["netdsl pinned NCHW"] = (pinned, "nchw")
    models["netdsl CL"] = (copy.deepcopy(default).to(memory_format=CL), "cl")
    follows = _netdsl(precision="autocast") if PRECISIONS[precision] is not None else None
    if follows is not None:
        follows.load_state_dict(default.state_dict())
        models["netdsl pinned autocast"] = (follows, "nchw")  # its layout: the compiler's choice
    models["reference NCHW"] = (ref, "nchw")
    models["reference CL"] = (copy.deepcopy(ref).to(memory_format=CL), "cl")
    return models


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def rss_growth(name: str, precision: str, threads: int, ref_cp: bool) -> float:
    """MiB: the peak RSS over two training steps (batch 64) less the RSS before them. The peak is
    the kernel's high-water mark (VmHWM), reset to the current RSS first (``clear_refs`` 5):
    getrusage's ru_maxrss would carry the parent's peak across fork and exec."""
    torch.set_num_threads(threads)
    model, layout = _models(ref_cp, name.startswith("netdsl pinned"), precision)[name]
    x = torch.randn(64, 3, 32, 32)
    x = x.to(memory_format=CL) if layout == "cl" else x
    step = _runner(model, "train", x, torch.randint(0, 10, (64,)), precision)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    step()
    step()
    return (_status_kib("VmHWM") - before) / 1024


def _rss_in_fresh_process(name: str, args) -> float:
    cmd = [sys.executable, __file__, "--rss-child", name, "--precision", args.precision, "--threads", str(args.threads)]
    out = subprocess.run(cmd + (["--ref-cp"] if args.ref_cp else []), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32", help="fp32, or bf16 autocast")
    ap.add_argument("--cases", nargs="*", default=["eval64", "eval1", "train64"])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--rss", action="store_true", help="peak RSS growth of two training steps, fresh processes")
    ap.add_argument("--sparsenet", action="store_true", help="also sparsenet_bc_v1 train step vs its --opt 0")
    ap.add_argument(
        "--ref-cp", action="store_true", help="the reference with torch.utils.checkpoint (memory_efficient)"
    )
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        print(json.dumps(rss_growth(args.rss_child, args.precision, args.threads, args.ref_cp)))
        return
    torch.set_num_threads(args.threads)
    models = _models(args.ref_cp, True, args.precision)
    flops = netdsl.compile_spec("densenet_bc100_k12").graph["total_flops"]
    eager, compiled = [], []
    with TaskProgress("bench_codegen", len(args.cases)) as bar:  # a bar on a terminal, nothing in a pipe
        for case in args.cases:
            bar.advance(0, case)
            batch = int(case.removeprefix("eval").removeprefix("train"))
            torch.manual_seed(batch)
            x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
            inputs = {"nchw": x, "cl": x.to(memory_format=CL)}
            fns = {k: _runner(m, case, inputs[lay], y, args.precision) for k, (m, lay) in models.items()}
            t = interleaved(fns, args.rounds)
            eager.append((case, batch, t))
            if not args.no_compile:
                best = {
                    side: min((k for k in t if k.startswith(side)), key=t.__getitem__)
                    for side in ("netdsl", "reference")
                }
                torch._dynamo.reset()
                comp = {k: (torch.compile(copy.deepcopy(models[k][0])), models[k][1]) for k in best.values()}
                cold = {}
                for k, (m, lay) in comp.items():
                    fn = _runner(m, case, inputs[lay], y, args.precision)
                    # cold: inductor's on-disk caches off, or a graph compiled in an earlier run
                    # would load in seconds
                    with torch._inductor.config.patch(force_disable_caches=True):
                        t0 = time.perf_counter()
                        fn()
                        cold[k] = time.perf_counter() - t0
                tc = interleaved(
                    {k: _runner(m, case, inputs[lay], y, args.precision) for k, (m, lay) in comp.items()}, args.rounds
                )
                compiled.append((case, best, tc, cold))
            bar.advance(1)
    extra = []
    if any(c.startswith("train") for c in args.cases):
        x = torch.randn(64, 3, 32, 32)
        with _autocast(args.precision):
            mem = {
                k: saved_bytes(models[k][0].train(), x.to(memory_format=CL) if models[k][1] == "cl" else x)
                for k in ("netdsl", "reference NCHW")
            }
        extra.append(("train64 activation memory (MiB)", mem["netdsl"] / 2**20, mem["reference NCHW"] / 2**20))
    if args.rss:
        rss = {k: _rss_in_fresh_process(k, args) for k in models}
        best_ref = min(rss["reference NCHW"], rss["reference CL"])
        extra.append(("train64 peak RSS growth, 2 steps (MiB; reference: its smaller)", rss["netdsl"], best_ref))
        extra.append(("  the same (MiB), netdsl CL vs reference CL", rss["netdsl CL"], rss["reference CL"]))
    if args.sparsenet:
        sp, naive = netdsl.build_model("sparsenet_bc_v1"), netdsl.build_model("sparsenet_bc_v1", opt=0)
        x = torch.randn(64, 3, 32, 32)
        y = torch.randint(0, 10, (64,))
        fns = {
            "netdsl": _runner(sp, "train", x, y, args.precision),
            "naive": _runner(naive, "train", x, y, args.precision),
        }
        t = interleaved(fns, args.rounds)
        extra.append(("sparsenet_bc_v1 train64 vs its --opt 0", t["netdsl"], t["naive"]))
    peak = conv_peak_gflops(args.threads, args.precision)
    # under autocast also the float32 peak: the module may run float32 (its choice), and "of peak"
    # is then of the faster of the two, the machine's best conv rate
    fp32_peak = peak if args.precision == "fp32" else conv_peak_gflops(args.threads, "fp32")
    ref_kind = "checkpointed (memory_efficient)" if args.ref_cp else "torch.cat per layer"
    print(
        f"threads={args.threads}, rounds={args.rounds}, torch {torch.__version__}, precision {args.precision}, "
        f"conv peak ({args.precision}) {peak:.1f} GFLOP/s, "
        + ("" if args.precision == "fp32" else f"conv peak (fp32) {fp32_peak:.1f} GFLOP/s, ")
        + f"reference {ref_kind}, allocator {allocator()}\n"
    )
    peak = max(peak, fp32_peak)
    names = list(models)
    print("Eager, medians in ms; netdsl = the default module called on NCHW (its layout is its own choice).\n")
    print(
        "| case | "
        + " | ".join(names)
        + " | best vs best | same layout NCHW / CL | netdsl on NCHW vs ref best | netdsl best GFLOP/s (of best peak) |"
    )
    print("|---" * (len(names) + 5) + "|")
    for case, batch, t in eager:
        nb = min(v for k, v in t.items() if k.startswith("netdsl"))
        rb = min(v for k, v in t.items() if k.startswith("reference"))
        nchw = t.get("netdsl pinned NCHW", t["netdsl"])
        same = f"{nchw / t['reference NCHW']:.2f}x / {t['netdsl CL'] / t['reference CL']:.2f}x"
        gf = flops * batch * (3 if case.startswith("train") else 1) * 2 / nb / 1e9
        cells = " | ".join(f"{t[k] * 1e3:.1f}" for k in names)
        print(
            f"| {case} | {cells} | **{nb / rb:.2f}x** | {same} | {t['netdsl'] / rb:.2f}x | {gf:.1f} ({gf / peak:.0%}) |"
        )
    if compiled or extra:
        print("\n| case | netdsl | reference | ratio |")
        print("|---|---|---|---|")
    for case, best, tc, cold in compiled:
        n, r = best["netdsl"], best["reference"]
        print(f"| {case} compiled ({n}; {r}) | {tc[n]:.4f} s | {tc[r]:.4f} s | **{tc[n] / tc[r]:.2f}x** |")
        print(f"| {case} cold compile | {cold[n]:.1f} s | {cold[r]:.1f} s | {cold[n] / cold[r]:.2f}x |")
    for name, a, b in extra:
        unit = "" if "MiB" in name else " s"
        fmt = f"{a:.1f}{unit} | {b:.1f}{unit}" if "MiB" in name else f"{a:.4f}{unit} | {b:.4f}{unit}"
        print(f"| {name} | {fmt} | **{a / b:.2f}x** |")


if __name__ == "__main__":
    main()
