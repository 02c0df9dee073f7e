"""The one compile pipeline: a target (spec file or preset) and overrides -> an analysed IR graph.

resolve the target -> parse, expand and lower -> default passes (shapes, counts) -> the passes of
the optimization level. The API (``compile_spec``, ``build_model``), the CLI and training all call
:func:`compile_target`; :func:`instantiate` turns its graph into a torch module.

>>> c = compile_target("densenet_bc100_k12", {"depth": 10, "k": 4})
>>> c.preset, c.overrides, c.graph.graph["params"]["depth"], c.input_shape
('densenet_bc100_k12', {'depth': 10, 'k': 4}, 10, (3, 32, 32))
>>> c.path.name, c.text == c.path.read_text(encoding="utf-8")
('densenet_bc.net', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from .errors import SpecValueError
from .frontend import Limits, lower_spec
from .frontend.load import load_module
from .ir import lint
from .passes import Pass, default_passes, plan_concat, run_pipeline
from .presets import resolve

# Optimization levels: 0 = naive (a concat per unit); 1 adds the concat-placement plan.
OPT_PASSES: dict[int, list[Pass]] = {0: [], 1: [Pass("plan_concat", plan_concat.run)]}
DEFAULT_OPT = 1


def opt_passes(opt: int) -> list[Pass]:
    if opt not in OPT_PASSES:
        raise SpecValueError(
            f"unknown optimization level {opt!r}",
            None,
            "levels: " + ", ".join(map(str, sorted(OPT_PASSES))) + " (0 = naive reference)",
        )
    return OPT_PASSES[opt]


@dataclass(frozen=True)
class Compiled:
    """One compiled spec and everything needed to compile it again (a checkpoint stores these)."""

    graph: nx.DiGraph
    target: str  # as given: a spec path or a preset name
    path: Path  # the root spec file (for a preset, the bundled file); includes resolve beside it
    preset: str | None
    overrides: dict = field(default_factory=dict)  # the caller's values, on top of the preset's
    opt: int = DEFAULT_OPT
    text: str = ""  # the root spec's source text, so a checkpoint never has to read the path again

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.graph.nodes[self.graph.graph["input"]]["shape"]
        return c, h, w

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.graph.nodes[self.graph.graph["output"]]["shape"])

    def source(self) -> dict:
        """Plain data that :func:`compile_source` compiles back to this graph (weights-only loadable)."""
        return {
            "target": self.target,
            "file": str(self.path),
            "name": self.graph.graph["name"],
            "preset": self.preset,
            "text": self.text,
        }


def compile_target(
    target: str | Path,
    overrides: dict | None = None,
    *,
    opt: int = DEFAULT_OPT,
    limits: Limits | None = None,
    text: str | None = None,
    check: bool = False,
) -> Compiled:
    """Compile a spec file or preset name with ``overrides`` (values or ``--set`` strings).

    ``text``: the root spec's source, used instead of reading the file (includes still resolve
    against the file's folder and the bundled library). ``check`` lints after every pass.
    """
    passes = default_passes() + opt_passes(opt)  # an unknown level is refused before any work
    path, values, preset = resolve(target)
    values.update(overrides or {})
    graph = lower_spec(path, values, limits, text=text)
    graph.graph["preset"] = preset
    graph = run_pipeline(graph, passes, lint if check else None)
    if text is None:  # read after lowering: the file has passed the front end's checks
        text = path.read_bytes().decode("utf-8", errors="replace")
    return Compiled(graph, str(target), path, preset, dict(overrides or {}), opt, text)


def compile_source(source: dict, overrides: dict | None = None, **kw) -> Compiled:
    """Compile a :meth:`Compiled.source` record from its embedded text: a preset by name, a file by
    the folder it was in (for its includes only; the stored path itself is never read)."""
    return compile_target(source["preset"] or source["file"], overrides, text=source["text"], **kw)


@dataclass(frozen=True)
class SpecHeader:
    name: str  # the network's name
    params: tuple[str, ...]  # its declared parameter names


def spec_header(target: str | Path, text: str | None = None) -> SpecHeader:
    """The network name and declared parameters of a target, by parsing only (no lowering):
    what a caller needs to choose overrides before the one compile."""
    path, _, _ = resolve(target)
    module, _ = load_module(path, text)
    if len(module.networks) != 1:
        compile_target(target, text=text)  # lowering reports a file without exactly one network, located
    net = module.networks[0]
    return SpecHeader(net.name, tuple(p.name for p in net.params))


def source_header(graph: nx.DiGraph) -> str:
    """The docstring of the generated torch source: where it came from and its parameters."""
    from ._version import __version__

    values = ", ".join(f"{k}={v}" for k, v in graph.graph["params"].items())
    return (
        f"{graph.graph['name']}: generated by netdsl {__version__} from {Path(graph.graph['file']).name}"
        + (f" (preset {graph.graph['preset']})" if graph.graph.get("preset") else "")
        + f"\n\nParameters: {values}\nNeeds only torch. Build with build() or Net()."
    )


def instantiate(graph: nx.DiGraph, seed: int | None = 0):
    """A compiled graph -> ``torch.nn.Module``: the class :mod:`netdsl.backends.torch.codegen`
    generates for it (planned for a planned graph), exec'd in-process.

    Every initial tensor (torch's own defaults included) depends on ``seed`` alone, and the
    caller's global random state is left as it was; ``seed=None`` draws from the global state.
    """
    from .backends.torch import codegen as torch_codegen

    return torch_codegen.build(graph, seed, header=source_header(graph))
