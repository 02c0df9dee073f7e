"""onnxruntime (CPU) vs torch eager on the same weights, batch 1 and 64.

    python benchmarks/bench_onnx.py [--models densenet_bc100_k12 sparsenet_bc_v1 densenet121]
                                    [--batches 1 64] [--threads 2] [--budget 8]

Both sides use ``--threads`` intra-op threads; onnxruntime's threads do not spin (netdsl's
session defaults). Each (model, batch) runs one warm-up, then repeats until ``--budget`` seconds
or 20 runs, alternating torch and onnxruntime so that load from other processes hits both
alike; the median is reported, and the ratio is taken from these same runs. Prints a Markdown
table and the max abs difference of the two outputs.
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
from netdsl.onnx_runtime import run, session


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(target: str, batches, threads: int, budget: float) -> list[dict]:
    torch.set_num_threads(threads)
    module = netdsl.build_model(target, seed=0).eval()
    model = onnx_model(target, weights=module)
    sess = session(model.SerializeToString(), device="cpu", threads=threads)
    c, h, w = sess.get_inputs()[0].shape[1:]
    rows = []
    for n in batches:
        x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0))
        xn = x.numpy()
        with torch.inference_mode():
            ref = module(x).numpy()
            got = run(sess, xn)
            t_torch, t_ort = [], []
            start = time.perf_counter()
            while len(t_ort) < 20 and (len(t_ort) < 2 or time.perf_counter() - start < budget):
                t_torch.append(timed(lambda: module(x)))
                t_ort.append(timed(lambda: run(sess, xn)))
        tt, to = statistics.median(t_torch), statistics.median(t_ort)
        rows.append(dict(model=target, batch=n, input=f"{h}x{w}", torch_ms=tt * 1e3, ort_ms=to * 1e3,
                         speedup=tt / to, runs=len(t_ort), max_abs_diff=float(np.abs(got - ref).max())))
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
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; threads {args.threads}")
    print("| model | input | batch | torch eager ms | onnxruntime ms | speedup | runs | max abs diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for target in args.models:
        for r in bench(target, args.batches, args.threads, args.budget):
            print(f"| {r['model']} | {r['input']} | {r['batch']} | {r['torch_ms']:.1f} | {r['ort_ms']:.1f} | "
                  f"{r['speedup']:.2f}x | {r['runs']} | {r['max_abs_diff']:.1e} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
