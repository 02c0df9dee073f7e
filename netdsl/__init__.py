"""netdsl: a compiler for convolutional networks described by their connectivity."""

from ._version import __version__
from .api import build_model, compile_spec, torch_source
from .errors import NetdslError


def __getattr__(name: str):
    # the weights API needs torch: imported on first use, so `import netdsl` stays light
    if name in ("load_weights", "export_weights"):
        from . import weights

        return getattr(weights, name)
    if name == "search":  # netdsl.search(spec, ...) returns the Optuna study (imports optuna: lazily)
        from .explore import search

        return search
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")


__all__ = [
    "NetdslError",
    "__version__",
    "build_model",
    "compile_spec",
    "export_weights",
    "load_weights",
    "search",
    "torch_source",
]
