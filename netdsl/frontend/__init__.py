"""The front end: .net text -> AST (parser) -> IR graph (lower)."""

from .load import lower_spec, parse_value
from .lower import Limits
from .parser import parse, parse_file

__all__ = ["Limits", "lower_spec", "parse", "parse_file", "parse_value"]
