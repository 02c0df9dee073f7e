"""Concat placement benchmark: hand-written DenseNet (torch.cat per layer), its checkpointed
"memory efficient" variant, netdsl --opt 0 and netdsl planned (optionally under torch.compile).

Every (spec, variant) runs in a fresh process with the same allocator (jemalloc via LD_PRELOAD
when present: glibc malloc page-faults on every large tensor here). Times are medians of
--repeats runs; training memory is what autograd saves for backward, measured with saved-tensor
hooks deduplicated by storage (netdsl.backends.torch.bench.saved_bytes).

    python benchmarks/bench_concat.py              # the table and the depth sweep, as markdown
    python benchmarks/bench_concat.py --quick      # small sizes, to check the script
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
# spec -> (overrides, inference batch, training batch); densenet121 runs at 224 with a small batch
SPECS = {
    "densenet_bc100_k12": ({}, 64, 64),
    "densenet121": ({}, 8, 8),
    "sparsenet_bc_v1": ({}, 64, 64),
    "specs/dense2net.net": ({"blocks": [6, 12, 24, 16], "k": 12}, 64, 16),
    "seqresnet_k8_r4_n1": ({}, 64, 64),
}
REFERENCE = {"densenet_bc100_k12", "densenet121"}
VARIANTS = ["ref", "ref_cp", "opt0", "planned"]
COMPILED = ["ref_compiled", "planned_compiled"]
SWEEP = [40, 100, 160, 250]


def build(spec: str, variant: str, overrides: dict):
    import torch

    sys.path.insert(0, str(HERE))
    from netdsl.api import build_model, compile_spec

    planned = build_model(spec, seed=0, **overrides)
    if variant.startswith("ref"):
        import reference_densenet as R

        values = compile_spec(spec, **overrides, opt=0).graph["params"]
        model = R.for_preset(spec, memory_efficient=variant == "ref_cp", **values)
        R.load_from(model, planned)
        model.input_shape = planned.input_shape
    elif variant == "opt0":
        model = build_model(spec, seed=0, opt=0, **overrides)
    else:
        model = planned
    if variant.endswith("compiled"):
        shape = model.input_shape
        model = torch.compile(model)
        model.input_shape = shape
    return model


def worker(job: dict) -> dict:
    import torch

    from netdsl.backends.torch.bench import forward_fn, median_seconds, saved_bytes, train_step_fn

    torch.manual_seed(0)
    model = build(job["spec"], job["variant"], job["overrides"])
    shape = tuple(model.input_shape)
    out: dict = {}
    r = job["repeats"]
    if "infer" in job["cases"]:
        model.eval()
        for b in (job["infer_batch"], 1):
            out[f"infer_b{b}_ms"] = 1e3 * median_seconds(forward_fn(model, torch.randn((b,) + shape)), r)
    if "train" in job["cases"]:
        x = torch.randn((job["train_batch"],) + shape)
        model.train()
        out["train_ms"] = 1e3 * median_seconds(train_step_fn(model, x), max(1, r // 2 + 1))
    if "mem" in job["cases"]:
        out["train_mib"] = saved_bytes(model, torch.randn((job["train_batch"],) + shape)) / 2**20
    return out


def spawn(job: dict) -> dict:
    env = dict(os.environ)
    if Path(JEMALLOC).exists():
        env["LD_PRELOAD"] = JEMALLOC
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_exponent(depths, values) -> float:
    """Least-squares slope of log(memory) against log(depth)."""
    xs = [math.log(d) for d in depths]
    ys = [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of ref and planned")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--specs", nargs="*", default=list(SPECS))
    ap.add_argument("--sweep-batch", type=int, default=16)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-table", action="store_true")
    ap.add_argument("--cases", default="infer,train,mem", help="comma list of infer, train, mem")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import platform

    import torch

    allocator = "jemalloc (LD_PRELOAD)" if Path(JEMALLOC).exists() else "glibc"
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, allocator: {allocator}"
    )
    print(f"# load average at start: {os.getloadavg()}")
    if not args.no_table:
        print(
            "\n| spec | variant | fwd b=N ms | fwd b=1 ms | train step ms | train saved MiB "
            "| fwd vs ref/opt0 | mem vs ref/opt0 |"
        )
        print("|---|---|---|---|---|---|---|---|")
    for spec in [] if args.no_table else args.specs:
        overrides, bi, bt = SPECS.get(spec, ({}, 64, 64))
        if args.quick:
            overrides, bi, bt = {**overrides, "depth": 16} if "bc100" in spec else overrides, 4, 4
        variants = (VARIANTS if spec in REFERENCE else ["opt0", "planned"]) + (
            COMPILED if args.compile and spec in REFERENCE else []
        )
        results = {}
        for v in variants:
            cases = args.cases.split(",")
            job = dict(
                spec=spec,
                variant=v,
                overrides=overrides,
                infer_batch=bi,
                train_batch=bt,
                repeats=2 if args.quick else args.repeats,
                cases=cases,
            )
            results[v] = res = spawn(job)
            base = results.get("ref") or results.get("opt0")
            if "error" in res:
                print(f"| {spec} | {v} | error: {res['error']} |||||||")
                continue

            def ratio(key):
                return f"{res[key] / base[key]:.2f}x" if base and key in base and key in res else ""

            def num(key, digits):
                return f"{res[key]:.{digits}f}" if key in res else "-"

            print(
                f"| {spec} | {v} (b={bi}/{bt}) | {num(f'infer_b{bi}_ms', 1)} | {num('infer_b1_ms', 1)} | "
                f"{num('train_ms', 0)} | {num('train_mib', 1)} | {ratio(f'infer_b{bi}_ms')} | {ratio('train_mib')} |",
                flush=True,
            )
    if args.no_sweep:
        return
    depths = [16, 28, 40] if args.quick else SWEEP
    print(f"\n## depth sweep: DenseNet-BC k=12, training activation memory (MiB, batch {args.sweep_batch})\n")
    print("| variant | " + " | ".join(f"L={d}" for d in depths) + " | growth exponent |")
    print("|---|" + "---|" * (len(depths) + 1))
    for v in VARIANTS:
        mems = []
        for d in depths:
            job = dict(
                spec="densenet_bc100_k12",
                variant=v,
                overrides={"depth": d},
                infer_batch=1,
                train_batch=args.sweep_batch,
                repeats=1,
                cases=["mem"],
            )
            mems.append(spawn(job).get("train_mib", float("nan")))
        print(f"| {v} | " + " | ".join(f"{m:.0f}" for m in mems) + f" | {fit_exponent(depths, mems):.2f} |", flush=True)


if __name__ == "__main__":
    main()
