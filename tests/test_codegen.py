"""The generated torch module: what prints is what runs, loops for repeated units, and the
module behaves like a hand-written one under pickle, deepcopy, tracing, export and compilation.
Reduced-depth networks; the every-preset variants are marked slow."""

import copy
import inspect
import io
import pickle
import traceback

import pytest
import torch

import netdsl
from netdsl.backends.torch import codegen as torch_codegen
from netdsl.presets import presets

from helpers import outputs, small_overrides

NETS = {
    "densenet_bc": ("specs/densenet_bc.net", {"depth": 16, "k": 4}),
    "sparsenet": ("sparsenet_bc_v1", {"blocks": [4, 4, 4], "k": 4, "far": 2, "near": 2}),
    "seqresnet": ("specs/seqresnet.net", {"k": 8, "r": 1}),
    "res2net": ("specs/res2net.net", {"layers": [1, 1], "base": 8, "size": 32}),
    "dense2net": ("specs/dense2net.net", {"blocks": [2, 2], "k": 8}),
    # several outputs: forward returns a tuple (cls, box)
    "dsod300": ("specs/dsod300.net", {"blocks": [1, 1, 1, 1], "k": 4, "widths": [8, 8, 4, 4, 4], "size": 64}),
    "fcdensenet": ("fcdensenet103", {"layers": [2, 2, 2, 2, 2, 3, 2, 2, 2, 2, 2], "k": 4, "first": 8, "size": 32}),
}


def _model(name, opt=1, seed=0, **more):
    target, over = NETS[name]
    return netdsl.build_model(target, seed=seed, opt=opt, **{**over, **more})


# DenseNet-BC with one unit per block (a head reading one feature, a transition reading two): the
# fast suite's torch.compile and export tests, whose cost grows with the traced ops.
TINY = {"depth": 10}


def _x(model, n=2):
    return torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["densenet_bc", "sparsenet"])
def test_printed_source_is_the_running_code(name):
    target, over = NETS[name]
    model = _model(name)
    source = netdsl.torch_source(target, **over)
    assert inspect.getsource(type(model)) in source
    # a traceback from inside the module points at a real line of that source
    broken = torch.randn(2, model.input_shape[0] + 1, *model.input_shape[1:])
    with pytest.raises(RuntimeError) as info:
        model(broken)
    frames = [f for f in traceback.extract_tb(info.value.__traceback__) if f.filename.startswith("<netdsl-generated")]
    assert frames and frames[-1].line and frames[-1].line in source


@pytest.mark.parametrize("opt", [0, 1])
def test_repeated_units_are_loops(opt):
    """BC-100 and SparseNet-bc fit in 250 lines: one unit class per block shape, a ModuleDict and
    a for loop per block; the state_dict keys are still the spec's names."""
    for target in ("densenet_bc100_k12", "sparsenet_bc_v1"):
        graph = netdsl.compile_spec(target, opt=opt)
        source = torch_codegen.generate(graph)
        assert len(source.splitlines()) <= 250, (target, len(source.splitlines()))
        assert source.count('{f"unit{i}": ') == 3  # a ModuleDict of unit instances per block
        units = sum(len(b.units) for b in graph.graph["blocks"])
        assert units >= 36 and source.count("class ") < 6
    keys = set(netdsl.build_model("densenet_bc100_k12", opt=opt).state_dict())
    assert "block1.unit16.conv2.weight" in keys and "transition2.conv1.weight" in keys


def test_plan_is_in_the_code():
    """opt 1 writes into one buffer per block and reads views; opt 0 concatenates per unit."""
    planned = netdsl.torch_source("densenet_bc100_k12", depth=16, k=4)
    naive = netdsl.torch_source("densenet_bc100_k12", depth=16, k=4, opt=0)
    assert "_buffer(" in planned and "_BatchNormReluConv" in planned
    assert "_buffer(" not in naive and "checkpoint" not in naive
    assert "data_ptr" not in planned and "data_ptr" not in naive


def _same(got, want, atol=None) -> bool:
    """Equal (or within ``atol``) outputs: one tensor, or every tensor of a multi-output tuple."""
    got, want = outputs(got), outputs(want)
    if len(got) != len(want):
        return False
    if atol is None:
        return all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    return all(torch.allclose(a, b, atol=atol) for a, b in zip(got, want, strict=True))


def _fast_first(names):
    """The first network in the fast suite, the others in the slow one."""
    return [names[0]] + [pytest.param(n, marks=pytest.mark.slow) for n in names[1:]]


@pytest.mark.parametrize("name", _fast_first(list(NETS)))
def test_pickle_and_deepcopy(name):
    model = _model(name).eval()
    x = _x(model)
    with torch.no_grad():
        want = model(x)
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            assert type(clone).__name__ == type(model).__name__
            assert _same(clone.eval()(x), want)
    buf = io.BytesIO()
    torch.save(model, buf)  # whole-module save, as users of torch.save(model) do
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert _same(loaded(x), want)


@pytest.mark.slow  # tracing and exporting take seconds; the fast suite's compiles trace the same code
@pytest.mark.parametrize("name", ["densenet_bc", "res2net", "dsod300"])
def test_jit_trace_and_export(name):
    model = _model(name, **(TINY if name == "densenet_bc" else {})).eval()
    x = _x(model)
    with torch.no_grad():
        want = model(x)
        traced = torch.jit.trace(model, x)
        assert _same(traced(x), want, atol=1e-6)
        exported = torch.export.export(model, (x,))
        assert _same(exported.module()(x), want, atol=1e-6)


def _assert_no_graph_breaks(model):
    """dynamo traces the whole forward as one graph in eval (no autograd) and in training."""
    torch._dynamo.reset()
    x = _x(model)
    model.eval()
    with torch.no_grad():
        assert torch._dynamo.explain(model)(x).graph_break_count == 0
    model.train()
    assert torch._dynamo.explain(model)(x).graph_break_count == 0


# slow: the fast suite's fullgraph compiles (eval: test_compiled_eval_reads_the_same_views, training:
# test_compiled_training_recomputes_no_convolution, test_fused_heads_equal_naive[plain-compiled])
# fail on any graph break
@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETS))
def test_no_graph_breaks_eval_and_train(name):
    _assert_no_graph_breaks(_model(name))


@pytest.mark.slow  # compiled training equals eager in the fast suite: test_fused_heads_equal_naive[plain-compiled]
def test_compiled_training_equals_eager_and_counts_batchnorm_once():
    """fullgraph compile (aot_eager: the autograd graph, no C++ toolchain) of a training step:
    same loss, gradients and BatchNorm running statistics as eager."""
    torch._dynamo.reset()
    eager = _model("densenet_bc").train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    x = _x(eager, 4)
    for m in (eager, compiled):
        m(x).square().mean().backward()
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name
    for (name, a), b in zip(eager.named_buffers(), compiled_model.buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name


def test_compiled_training_recomputes_no_convolution():
    """Compiled training (the heads' ops written out for the compiler): a training step runs each
    convolution once, and the batch statistics once per feature (each head normalizes with its
    features' statistics instead of reducing over its whole concatenation)."""
    from torch.profiler import profile

    torch._dynamo.reset()
    model = _model("densenet_bc", **TINY).train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = _x(model)
    compiled(x).sum().backward()
    with profile() as prof:
        compiled(x).sum().backward()
    runs = {e.key: e.count for e in prof.key_averages()}
    assert runs["aten::convolution"] == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    blocks = [m for name, m in model.named_children() if name.startswith("block")]
    assert runs["aten::var_mean"] == sum(len(b) + 1 for b in blocks)  # block inputs and unit outputs


_LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
# SparseNet's gathered reads under compile: fast in test_plan_equivalence.py's plain-compiled fused
# heads; SeqResNet has dense and window reads and streams
_FAST_VIEWS = {("seqresnet", "channels_last")}


@pytest.mark.parametrize(
    "name, layout",
    [
        pytest.param(n, lay, marks=() if (n, lay) in _FAST_VIEWS else pytest.mark.slow, id=f"{n}-{lay}")
        for n in NETS
        for lay in _LAYOUTS
    ],
)
def test_compiled_eval_reads_the_same_views(name, layout):
    """Under torch.compile a buffer's reads are ``as_strided`` views (``_channels``): the same
    values as eager's slices, in both layouts, for single reads (DenseNet), gathered ranges
    (SparseNet) and streams. aot_eager runs the traced graph itself."""
    torch._dynamo.reset()
    model = _model(name).eval().to(memory_format=_LAYOUTS[layout])
    x = _x(model).contiguous(memory_format=_LAYOUTS[layout])
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert _same(compiled(x), model(x), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet_bc", "sparsenet"])
def test_inductor_eval_equals_eager(name):
    """The inductor-compiled planned module (what the compiled benchmark runs) gives eager's values."""
    torch._dynamo.reset()
    model = _model(name).eval().to(memory_format=torch.channels_last)
    x = _x(model, 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert _same(torch.compile(model, fullgraph=True)(x), model(x), atol=1e-5)


@pytest.mark.slow  # a compile-cache property: two compiles of the same module
def test_batch_size_change_recompiles_at_most_once():
    torch._dynamo.reset()
    counts = {"n": 0}

    def backend(gm, inputs):
        counts["n"] += 1
        return gm.forward

    model = _model("densenet_bc", **TINY).eval()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        for n in (2, 3, 4, 5):
            compiled(_x(model, n))
    assert counts["n"] <= 2


def _one_per_structure() -> list[str]:
    """One preset for each structure the presets have: per spec file, per set of overridden
    parameters and values of its switches (bc, attention, se, ...), the smallest. Presets that
    differ only in sizes (depth, k, blocks) generate the same code with other numbers; torch.compile
    of all 54 took 8 of the slow suite's 15 minutes."""
    chosen: dict[tuple, tuple[float, str]] = {}
    for name, p in presets().items():
        switches = tuple(sorted((k, v) for k, v in p.values.items() if isinstance(v, (bool, str))))
        key = (p.spec, frozenset(p.values), switches)
        size = p.paper_params if p.paper_params is not None else float("inf")
        if key not in chosen or size < chosen[key][0]:
            chosen[key] = (size, name)
    return sorted(name for _, name in chosen.values())


@pytest.mark.slow
@pytest.mark.parametrize("preset", _one_per_structure())
def test_every_preset_structure_is_compiler_clean(preset):
    """A preset of each structure at test resolution: 0 graph breaks in eval and in training."""
    _assert_no_graph_breaks(netdsl.build_model(preset, **small_overrides(preset)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet_bc", "dsod300"])
def test_onnx_export_through_torch(name):
    model = _model(name).eval()
    x = _x(model)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (x,), buf, dynamo=True)  # export traces the as_strided reads
        want = model(x)
    import onnxruntime as ort

    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    # The module runs in channels_last (the compiler's layout), onnxruntime in NCHW: the convs sum
    # in another order, so the tolerance follows the outputs' magnitude (dsod300's reach 28).
    scale = max(1.0, *(w.abs().max().item() for w in outputs(want)))
    assert _same([torch.from_numpy(g) for g in got], want, atol=1e-5 * scale)


DEAD_UNITS = """
network t() {
    input(4, 8, 8)
    block(8, rule(ispow2(i + j)), output=next) { bn; relu; conv(4, 1); bn; relu; conv(2, 3) }
}
"""


def test_a_block_whose_unread_units_read_its_features_is_written_out(write_spec):
    # Unit 7 is the output (what a unit 9 would read); units 2, 4, 5, 6, 8 are read by nothing,
    # and 5 and 6 read features computed inside the block (x_3, x_2): the block is emitted op by
    # op (a fuzzed mutant of sparsenet_exp.net, rule(ispow2(i -- j)), raised a KeyError here).
    spec = write_spec(DEAD_UNITS)
    g = netdsl.compile_spec(spec)
    (b,) = g.graph["blocks"]
    assert b.outputs == (7,) and b.connection_sets()[5] == (3,)
    planned = netdsl.build_model(spec, seed=1)
    naive = netdsl.build_model(spec, seed=1, opt=0)
    naive.load_state_dict(planned.state_dict())
    assert sum(p.numel() for p in planned.parameters()) == g.graph["total_params"]
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    planned.double().eval()
    naive.double().eval()
    with torch.no_grad():
        assert torch.allclose(planned(x), naive(x), rtol=1e-10, atol=1e-10)
    forward = torch_codegen.generate(g).split("def forward", 1)[1]
    assert all(f"self.block1.unit{i}.conv2(" in forward for i in range(1, 9))  # op by op, every unit
