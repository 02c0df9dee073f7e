"""Generated torch files side by side: a before/after of the code generator, in ONE process.

Each FILE is what ``netdsl compile SPEC --target torch -o FILE`` wrote (it needs only torch), for
example from two checkouts of netdsl. Every module gets the first one's weights (the state_dict
keys are the module paths, which the generator keeps), then the rounds interleave eval at batch
64 (no_grad) and an SGD training step at batch 64, fp32, each called as users call it (an NCHW
tensor: the module's own layout choice, if it makes one, is part of what is measured) and with
module and input moved to channels_last. Medians; ratios against the first file.

    git worktree add /tmp/old <rev>
    (cd /tmp/old && PYTHONPATH=. python -m netdsl compile densenet_bc100_k12 --target torch -o /tmp/old.py)
    python -m netdsl compile densenet_bc100_k12 --target torch -o /tmp/new.py
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \\
      python benchmarks/bench_files.py /tmp/old.py /tmp/new.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codegen import _runner, interleaved  # this folder's benchmark helpers

from netdsl.backends.torch.bench import allocator


def load(path: Path):
    """The module a generated file builds (its ``build()``), the file imported under its stem."""
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = [load(f) for f in args.files]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    shape = next(models[0].parameters()).shape  # the stem conv's weight: (out, in, kh, kw)
    size = 32  # the CIFAR presets; pass an ImageNet file at 224 by editing here if needed
    x = torch.randn(args.batch, shape[1], size, size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    print(f"# torch {torch.__version__}, {args.threads} threads, allocator {allocator()}, batch {args.batch}")
    for case in ("eval", "train"):
        fns = {}
        for f, m in zip(args.files, models, strict=True):
            fns[f"{f.stem} NCHW input"] = _runner(m, case + str(args.batch), x, y)
        for f, m in zip(args.files, models, strict=True):
            cl = copy.deepcopy(m).to(memory_format=torch.channels_last)  # .to moves parameters in place
            fns[f"{f.stem} CL"] = _runner(cl, case + str(args.batch), x_cl, y)
        times = interleaved(fns, args.rounds)
        first = {"NCHW input": times[f"{args.files[0].stem} NCHW input"], "CL": times[f"{args.files[0].stem} CL"]}
        for name, t in times.items():
            ratio = t / first["CL" if name.endswith(" CL") else "NCHW input"]
            print(f"{case:5s}  {name:30s} {t * 1e3:9.1f} ms  {ratio:.3f}x")


if __name__ == "__main__":
    main()
