"""onnxruntime (CPU) vs torch eager on the same weights, batch 1 and 64.

    python benchmarks/bench_onnx.py [--models densenet_bc100_k12 sparsenet_bc_v1 densenet121]
                                    [--batches 1 64] [--threads 2] [--budget 8]

Three executors of one network and one set of weights:
- torch eager: the module a user writes by hand (``build_model(opt=0)``: torchvision's layout,
  one ``torch.cat`` per unit) -- what the issue's baseline measured (docs/performance.md);
- torch planned: netdsl's default module (shared feature buffers, views instead of copies);
- onnxruntime: ``compile --target onnx`` in netdsl's session (no spinning, full optimization).
Both torch modules and onnxruntime use ``--threads`` intra-op threads. Each (model, batch) runs
one warm-up, then rounds of the three, alternating, until ``--budget`` seconds or 20 rounds, so
that load from other processes hits all alike; medians are reported and the ratios are taken
from these same runs. Also prints the max difference of onnxruntime from torch eager (relative to
the largest output), and the allocator in use (``LD_PRELOAD``): compare rows only under the same one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

import netdsl
from netdsl.api import onnx_model
from netdsl.backends.torch.bench import allocator
from netdsl.onnx_runtime import run, session


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(target: str, batches, threads: int, budget: float) -> list[dict]:
    torch.set_num_threads(threads)
    eager = netdsl.build_model(target, seed=0, opt=0).eval()
    planned = netdsl.build_model(target, seed=0).eval()
    planned.load_state_dict(eager.state_dict())
    model = onnx_model(target, weights=eager)
    sess = session(model.SerializeToString(), device="cpu", threads=threads)
    c, h, w = sess.get_inputs()[0].shape[1:]
    rows = []
    for n in batches:
        x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0))
        xn = x.numpy()
        runs = {"eager": lambda: eager(x), "planned": lambda: planned(x), "ort": lambda: run(sess, xn)}
        with torch.inference_mode():
            ref = eager(x).numpy()
            diff = float(np.abs(run(sess, xn) - ref).max() / np.abs(ref).max())
            planned(x)
            times = {k: [] for k in runs}
            start = time.perf_counter()
            while len(times["ort"]) < 20 and (len(times["ort"]) < 2 or time.perf_counter() - start < budget):
                for k, fn in runs.items():
                    times[k].append(timed(fn))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append(
            dict(
                model=target,
                batch=n,
                input=f"{h}x{w}",
                eager_ms=med["eager"],
                planned_ms=med["planned"],
                ort_ms=med["ort"],
                vs_eager=med["eager"] / med["ort"],
                vs_planned=med["planned"] / med["ort"],
                runs=len(times["ort"]),
                max_abs_diff=diff,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["densenet_bc100_k12", "sparsenet_bc_v1", "densenet121"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timing per (model, batch)")
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore", UserWarning)
    print(
        f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; threads {args.threads}; "
        f"allocator: {allocator()}"
    )
    print(
        "| model | input | batch | torch eager ms | torch planned ms | onnxruntime ms | vs eager | vs planned "
        "| runs | max diff / max output |"
    )
    print("| --- | --- | --- | --: | --: | --: | --: | --: | --: | --: |")
    for target in args.models:
        for r in bench(target, args.batches, args.threads, args.budget):
            print(
                f"| {r['model']} | {r['input']} | {r['batch']} | {r['eager_ms']:.1f} | {r['planned_ms']:.1f} | "
                f"{r['ort_ms']:.1f} | {r['vs_eager']:.2f}x | {r['vs_planned']:.2f}x | {r['runs']} | "
                f"{r['max_abs_diff']:.1e} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
