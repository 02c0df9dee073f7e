"""netdsl: a compiler for convolutional networks described by their connectivity."""

__version__ = "0.1.0"

from .api import build_model, compile_spec, torch_source
from .errors import NetdslError

__all__ = ["NetdslError", "__version__", "build_model", "compile_spec", "torch_source"]
