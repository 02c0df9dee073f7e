"""Running ONNX models with onnxruntime, with the execution provider chosen deliberately.

- ``device="auto"`` uses CUDA only when the CUDA provider actually loads (an onnxruntime-gpu
  install lists it even without a usable CUDA/cuDNN), else the CPU. The probe silences
  onnxruntime's provider-loading error messages, which it writes straight to file descriptor 2.
- Thread pools do not spin: an idle onnxruntime thread otherwise busy-waits and takes cores from
  other work on the machine (and from torch in the same process).

>>> from netdsl.api import build_model, onnx_model
>>> model = onnx_model("densenet_bc100_k12", depth=10, k=4,
...                    weights=build_model("densenet_bc100_k12", depth=10, k=4))
>>> sess = session(model.SerializeToString(), device="cpu")
>>> sess.get_providers()
['CPUExecutionProvider']
>>> run(sess, np.zeros((2, 3, 32, 32), np.float32)).shape
(2, 10)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .errors import NetdslError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise NetdslError(
            "onnxruntime is not installed",
            None,
            "pip install 'netdsl[cpu]' (onnxruntime) or 'netdsl[gpu]' (onnxruntime-gpu)",
        ) from None
    return onnxruntime


def session_options(threads: int | None = None):
    """Options for a session that shares the machine: no spinning, ``threads`` intra-op threads
    (default: onnxruntime's choice, one per physical core), sequential execution, quiet log."""
    ort = _ort()
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: no per-node "not assigned to the preferred provider" lines
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


@contextlib.contextmanager
def _quiet_stderr():
    """Swallow what C++ code writes to fd 2 (onnxruntime logs provider-load failures there)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _load(model, so, providers):
    ort = _ort()
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=so, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
        raise NetdslError(
            f"onnxruntime cannot load the model: {str(err).splitlines()[0]}",
            None,
            "is it an ONNX file written by 'netdsl compile --target onnx'?",
        ) from None


def session(model: str | Path | bytes, device: str = "auto", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on ``device`` ("auto", "cpu" or "cuda").

    "cuda" fails with a :class:`NetdslError` if the CUDA provider does not load; "auto" falls
    back to the CPU silently."""
    ort = _ort()
    if device not in ("auto", "cpu", "cuda"):
        raise NetdslError(f"unknown device '{device}'", None, "use auto, cpu or cuda")
    if isinstance(model, (str, Path)) and not Path(model).is_file():
        raise NetdslError(f"model file '{model}' not found")
    so = session_options(threads)
    if device != "cpu" and CUDA in ort.get_available_providers():
        previous = ort.get_default_logger_severity() if hasattr(ort, "get_default_logger_severity") else 2
        ort.set_default_logger_severity(4)
        try:
            # onnxruntime reports a provider it cannot use both on fd 2 (C++ logger) and as a
            # Python UserWarning; the fallback below is the answer to either.
            with _quiet_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sess = _load(model, so, [CUDA, CPU])
        finally:
            ort.set_default_logger_severity(previous)
        if sess.get_providers()[0] == CUDA:
            return sess
    if device == "cuda":
        raise NetdslError(
            "the CUDA execution provider is not available",
            None,
            "install onnxruntime-gpu with a matching CUDA and cuDNN, or use --device cpu",
        )
    return _load(model, so, [CPU])


def input_shape(sess, batch: int = 1) -> tuple[int, ...]:
    """The model input's declared shape with the symbolic batch dimension set to ``batch``."""
    dims = sess.get_inputs()[0].shape
    return tuple(batch if not isinstance(d, int) else d for d in dims)


def run(sess, x: np.ndarray) -> np.ndarray:
    """Run a single-input model on ``x`` (cast to float32); its first output."""
    return next(iter(run_all(sess, x).values()))


def run_all(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run a single-input model on ``x`` (cast to float32): every output by name, in the model's
    order (a network with ``output(cls, box)`` has two)."""
    inp = sess.get_inputs()[0]
    want = inp.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != len(want) or any(isinstance(d, int) and d != s for d, s in zip(want, x.shape, strict=True)):
        raise NetdslError(
            f"input of shape {tuple(x.shape)} does not fit the model's {tuple(want)}",
            None,
            "the first dimension is the batch; the others must match",
        )
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {inp.name: x}), strict=True))
