"""``netdsl run model.onnx [--input x.npy]``: run an ONNX model with onnxruntime and summarize
the output (a random input of the declared shape when no input is given)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..display import shown
from ..errors import NetdslError
from .common import existing_file, non_negative_int, positive_int, writable_output


def register(sub) -> None:
    p = sub.add_parser("run", help="run an ONNX model with onnxruntime and summarize its output")
    p.add_argument("model", help="an .onnx file (netdsl compile ... --target onnx -o FILE)")
    p.add_argument("--input", help=".npy array of shape (N, C, H, W); default: random normal")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size of the random input (default 1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random input")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="execution provider: auto = CUDA when it loads, else CPU",
    )
    p.add_argument(
        "--output", help="save the output array to this .npy file (several outputs: an .npz archive of them by name)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (shapes, statistics, top classes)")
    p.set_defaults(func=run)


def _load_input(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise NetdslError(f"input file '{path}' not found") from None
    except (ValueError, OSError) as err:
        raise NetdslError(
            f"cannot read '{path}' as a .npy array: {err}", None, "write it with numpy.save(path, array)"
        ) from None


def summary_lines(y: np.ndarray) -> list[str]:
    """Shape, statistics and, for (N, classes) outputs, each sample's top class."""
    lines = [
        f"output: shape {tuple(y.shape)}, {y.dtype}",
        f"  min {y.min():.6g}  max {y.max():.6g}  mean {y.mean():.6g}  std {y.std():.6g}",
    ]
    if y.ndim == 2:
        top = y.argmax(axis=1)
        shown = ", ".join(f"{int(c)} ({y[i, c]:.4g})" for i, c in enumerate(top[:8]))
        lines.append(f"  top class per sample: {shown}" + (" ..." if len(top) > 8 else ""))
    return lines


def run(args) -> int:
    from ..io import write_atomic
    from ..onnx_runtime import input_shape, run_all, session

    existing_file(args.model, "model")
    if args.input:
        existing_file(args.input, "--input")
    if args.output:
        writable_output(args.output, "--output")
    sess = session(args.model, device=args.device, threads=args.threads)
    if args.input:
        x = _load_input(args.input)
    else:
        x = np.random.default_rng(args.seed).standard_normal(input_shape(sess, args.batch)).astype(np.float32)
    ys = run_all(sess, x)
    y = next(iter(ys.values()))
    if args.output:
        import io

        buf = io.BytesIO()
        if len(ys) > 1:
            arrays: dict[str, Any] = dict(ys)  # numpy's stub types **kwds like its keyword options
            np.savez(buf, **arrays)
        else:
            np.save(buf, y)
        write_atomic(args.output, buf.getvalue())
    if args.json:
        data = run_dict(args, sess.get_providers()[0], x, y)
        if len(ys) > 1:  # "output" stays the first; every output by name
            data["outputs"] = {name: _stats(v) for name, v in ys.items()}
        print(json.dumps(data, indent=2))
        return 0
    print(f"model: {shown(args.model)}  provider: {sess.get_providers()[0]}")
    print(
        f"input: shape {tuple(x.shape)}"
        + (f" from {shown(args.input)}" if args.input else f" (random, seed {args.seed})")
    )
    if len(ys) > 1:  # a detector's heads are no class scores: shape and statistics of each
        for name, v in ys.items():
            print("\n".join(summary_lines(v)[:2]).replace("output:", f"output {shown(name)}:", 1))
    else:
        print("\n".join(summary_lines(y)))
    if args.output:
        print(f"wrote {shown(args.output)}")
    return 0


def _stats(y: np.ndarray) -> dict:
    return {
        "shape": list(y.shape),
        "dtype": str(y.dtype),
        **{stat: float(getattr(y, stat)()) for stat in ("min", "max", "mean", "std")},
    }


def run_dict(args, provider: str, x: np.ndarray, y: np.ndarray) -> dict:
    """``--json``: what the text output says, as numbers (file names as given, not escaped)."""
    out = _stats(y)
    if y.ndim == 2:
        out["top_class"] = [int(c) for c in y.argmax(axis=1)]
    return {
        "model": str(args.model),
        "provider": provider,
        "input": {"shape": list(x.shape), "file": args.input, "seed": None if args.input else args.seed},
        "output": out,
        "output_file": args.output,
    }
