"""The planned executor computes the naive module's function: equal outputs in eval and equal
gradients (and BatchNorm statistics) in training, float64, on every spec in specs/."""

import copy
from pathlib import Path

import pytest
import torch

from netdsl.api import build_model, compile_spec, torch_source
from netdsl.ir.graph import blocks
from netdsl.ir.plan import pool_before_conv, segments

from helpers import SPECS, compiled, outputs, spec_params

SPECS_BY_NAME = {s.stem: s for s in SPECS}

# Small overrides per spec, so every spec runs in well under a second; the patterns stay.
SMALL = {
    "custom_rule": {"units": 4, "k": 4},
    "dense2net": {"blocks": [2, 2], "k": 8},
    "densenet_bc": {"depth": 16, "k": 4},
    "densenet_cifar": {"depth": 10, "k": 4},
    "densenet_imagenet": {"blocks": [2, 2], "k": 8, "size": 32},
    "dla": {"levels": [1, 2, 3, 4], "channels": [4, 8, 8, 16], "residual": True, "size": 32},
    "dpn": {"units": [2, 2], "inc": [4, 8], "k_r": 16, "groups": 4, "size": 32},
    "dsod": {"blocks": [2, 2], "k": 8, "size": 32},
    "dsod300": {"blocks": [2, 2, 2, 2], "k": 4, "widths": [8, 8, 4, 4, 4], "size": 64},
    "fcdensenet": {"layers": [2, 3, 2, 2, 2, 3, 2, 2, 2, 3, 2], "k": 4, "first": 8, "size": 32, "p": 0.0},
    "hardnet": {"layers": [4, 6], "growth": [4, 6], "channels": [16, 24], "stem": 16, "size": 32, "drop": 0.0},
    "peleenet": {"layers": [2, 3], "growth": 8, "stem": 8, "size": 32, "drop": 0.0},
    "randwire": {"C": 4, "N": 12, "regular": True, "size": 32},
    "res2net": {"layers": [1, 1], "base": 8, "size": 32},
    "seqresnet": {"k": 8, "r": 1},
    "seqresnet_imagenet": {"size": 32, "widen": 1, "blocks": [1, 1, 1, 1]},
    "sparsenet": {"blocks": [6, 4], "k": 4, "far": 2, "near": 2},
    "sparsenet_exp": {"blocks": [5, 3], "k": 4, "size": 32},
    "vovnet": {"layers": [1, 2], "channels": [16, 24], "branch": [8, 8], "stem": 16, "size": 32},
    "wseqconv": {"k": 4, "r": 2},
}
# Keys a spec without an entry above is shrunk by, where it declares them.
GENERIC = {"size": 32, "k": 4, "units": 4, "depth": 10, "n": 1}


def small(spec) -> dict:
    if spec.stem in SMALL:
        return SMALL[spec.stem]
    declared = compiled(spec, opt=0).graph["params"]
    out = {k: v for k, v in GENERIC.items() if k in declared}
    for key in ("blocks", "layers"):
        if isinstance(declared.get(key), list):
            out[key] = [2] * min(2, len(declared[key]))
    return out


def pair(spec, **extra):
    overrides = {**small(spec), **extra}
    planned = build_model(spec, seed=1, **overrides)
    naive = build_model(spec, seed=1, opt=0, **overrides)
    assert naive.load_state_dict(planned.state_dict()) is not None
    return planned, naive, tuple(naive.input_shape)


def randomize_bn(*models):
    """Non-trivial running statistics, the same in both models, so eval exercises the folds."""
    gen = torch.Generator().manual_seed(3)
    states = [m.state_dict() for m in models]
    for key, value in states[0].items():
        if key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=gen, dtype=value.dtype) + 0.5)
        elif key.endswith("running_mean") or (key.endswith("bias") and value.dim() == 1):
            value.copy_(torch.randn(value.shape, generator=gen, dtype=value.dtype) * 0.1)
    for m in models[1:]:
        m.load_state_dict(states[0])


@pytest.mark.parametrize("spec", spec_params())
def test_eval_outputs_equal(spec):
    planned, naive, shape = pair(spec)
    planned.double().eval()
    naive.double().eval()
    randomize_bn(planned, naive)
    x = torch.randn((2,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        wants = outputs(naive(x))
        gots = outputs(planned(x))
    assert len(gots) == len(wants)
    for got, want in zip(gots, wants, strict=True):  # every output of a multi-output network
        assert got.shape == want.shape
        scale = want.abs().max().item() + 1.0
        assert (got - want).abs().max().item() <= 1e-9 * scale


@pytest.mark.parametrize("spec", spec_params())
def test_train_gradients_equal(spec):
    planned, naive, shape = pair(spec)
    planned.double().train()
    naive.double().train()
    x = torch.randn((3,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    outs = [weighted_backward(m, x) for m in (planned, naive)]
    for got, want in zip(outs[0], outs[1], strict=True):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-10)
    assert_same_training(planned, naive)


def weighted_backward(model, *xs) -> list[torch.Tensor]:
    """Backward of a loss that reads every output of every call, each element weighted
    differently; returns the outputs, detached."""
    ys = [y for x in xs for y in outputs(model(x))]
    sum((y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() for y in ys).backward()
    return [y.detach() for y in ys]


def assert_same_training(planned, naive):
    """Equal gradients (and dtypes), and BatchNorm running statistics updated exactly once."""
    grads = dict(planned.named_parameters())
    for name, p in naive.named_parameters():
        assert grads[name].grad.dtype == p.dtype, name
        assert torch.allclose(grads[name].grad, p.grad, rtol=1e-7, atol=1e-10), name
    bufs = dict(planned.named_buffers())
    for name, b in naive.named_buffers():
        assert torch.equal(bufs[name], b) or torch.allclose(bufs[name], b, rtol=1e-12, atol=1e-12), name


def test_every_pattern_is_covered():
    """The parametrized specs exercise dense, path, window, split, rule and graph blocks."""
    seen = set()
    for spec in SPECS:
        for b in blocks(compiled(spec, **small(spec))):
            seen.add(b.pattern.split("(")[0])
    assert {"dense", "path", "window", "split", "rule", "graph"} <= seen


PATH_SPEC = """
network t(classes=10) {
    input(3, 8, 8)
    stem: conv(16, 3)
    block(6, path(far=2, near=2)) { bn; relu; conv(8, 1); bn; relu; conv(4, 3) }
    bn; relu; gap
    fc: linear(classes)
}
"""


def test_split_strategy_runs_the_consumer_per_range(write_spec):
    """Path units whose two ranges are cheaper to split than to gather: the plan says split,
    the executor distributes BN+ReLU+1x1 conv over the ranges, and the result is unchanged."""
    spec = write_spec(PATH_SPEC)
    graph = compile_spec(spec)
    strategies = [graph.nodes[u.aggregate].get("read", {}).get("strategy") for u in blocks(graph)[0].units]
    # units 1-4 read at most far + near features: a prefix; 5 and 6 skip the middle: two ranges
    assert strategies == [None, "view", "view", "view", "split", "split"]
    planned = build_model(spec, seed=1)
    naive = build_model(spec, seed=1, opt=0)
    naive.load_state_dict(planned.state_dict())
    planned.double().eval()
    naive.double().eval()
    randomize_bn(planned, naive)
    x = torch.randn((2, 3, 8, 8), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(planned(x), naive(x), rtol=1e-10, atol=1e-10)


STREAMS_SPEC = Path(__file__).resolve().parent.parent / "docs" / "images" / "specs" / "streams.net"


def test_multi_stream_block_is_planned_and_equal():
    """A dense block carrying two streams (docs/images/specs/streams.net: one entering the block
    and added per unit, one started in the block): its dense part is planned (every unit reads a
    view of the buffer) and the planned module equals the naive one, in eval and in training."""
    graph = compile_spec(STREAMS_SPEC)
    (b,) = blocks(graph)
    assert len(b.streams) == 2
    assert [graph.nodes[u.aggregate].get("read", {}).get("strategy") for u in b.units] == [None] + ["view"] * 3
    assert graph.nodes[b.output]["read"]["strategy"] == "view"
    planned = build_model(STREAMS_SPEC, seed=1).double()
    naive = build_model(STREAMS_SPEC, seed=1, opt=0).double()
    naive.load_state_dict(planned.state_dict())
    randomize_bn(planned, naive)
    x = torch.randn((3, 3, 16, 16), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    planned.eval()
    naive.eval()
    with torch.no_grad():
        assert torch.allclose(planned(x), naive(x), rtol=1e-10, atol=1e-12)
    planned.train()
    naive.train()
    (got,), (want,) = (weighted_backward(m, x) for m in (planned, naive))
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-10)
    assert_same_training(planned, naive)


def _graph_names(out: torch.Tensor) -> list[str]:
    """The names of the autograd nodes ``out`` was computed by."""
    seen, stack, names = set(), [out.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack += [n for n, _ in node.next_functions]
    return names


def test_dense_heads_train_through_the_buffer():
    """BC's planned training graph: each unit's and each transition's concat -> BN -> ReLU -> conv
    is one _BatchNormReluConv node reading the block's buffer -- no torch.cat, no checkpoint -- and
    autograd saves the buffer, not the concatenations (one storage per block)."""
    planned, _, shape = pair(SPECS_BY_NAME["densenet_bc"])
    planned.train()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        names = _graph_names(planned(torch.randn((2,) + shape)))
    units = len(planned.block1) + len(planned.block2) + len(planned.block3)
    assert names.count("_BatchNormReluConvBackward") == units + 3  # two transitions and the head
    assert "CatBackward0" not in names and not any("Checkpoint" in n for n in names)
    sizes = {t.untyped_storage().nbytes() for t in saved}
    for i, block in enumerate((planned.block1, planned.block2, planned.block3)):
        width = block.unit1.bn1.num_features + len(block) * block.unit1.conv2.out_channels
        assert 2 * width * (32 >> i) ** 2 * 4 in sizes  # batch 2, float32


def _without_running_statistics(bn):
    """A BatchNorm built with track_running_stats=False: batch statistics in eval mode too."""
    bn.track_running_stats = False
    bn.running_mean = bn.running_var = bn.num_batches_tracked = None


_FUSED_CASES = ["two_forwards", "channels_last", "frozen_bn", "cumulative_momentum", "no_running_stats"]


@pytest.mark.parametrize(
    "case, compiled",
    [(c, False) for c in _FUSED_CASES]
    # each torch.compile takes seconds: the slow suite compiles these (the fast one compiles DenseNet-BC's
    # training and SeqResNet's eval in tests/test_codegen.py)
    + [
        pytest.param(c, True, marks=pytest.mark.slow)
        for c in ("plain", "channels_last", "frozen_bn", "no_running_stats")
    ],
    ids=lambda v: {True: "compiled", False: "eager"}.get(v, v) if isinstance(v, bool) else v,
)
def test_fused_heads_equal_naive(case, compiled):
    """Planned training gradients and running statistics equal the naive module's where the fused
    head is at its edges: two forwards before one backward (each writes its own buffer),
    channels_last buffers, BatchNorm in eval mode with autograd on (fine-tuning: the running
    statistics are constants), momentum None (a cumulative average, over two batches here), and
    BatchNorm without running statistics (batch statistics even in eval mode). Compiled
    (aot_eager: the traced autograd graph), the Function runs on the concatenation instead of the
    buffer and saves its output: the same values; compiled on one block of six units (the sixth
    gathers two ranges), as each traced op costs compile time."""
    planned, naive, shape = pair(SPECS_BY_NAME["sparsenet"], **({"blocks": [6]} if compiled else {}))
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn((3,) + shape, dtype=torch.float64, generator=gen) for _ in range(2)]
    for m in (planned, naive):
        m.double().train(case not in ("frozen_bn", "no_running_stats"))
        bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
        for bn in bns:
            if case == "cumulative_momentum":
                bn.momentum = None
            elif case == "no_running_stats":
                _without_running_statistics(bn)
        if case == "channels_last":
            m.to(memory_format=torch.channels_last)
        if compiled and m is planned:
            torch._dynamo.reset()
            m = torch.compile(m, fullgraph=True, backend="aot_eager")
        weighted_backward(m, *(xs if case in ("two_forwards", "cumulative_momentum") else xs[:1]))
    assert_same_training(planned, naive)


def test_batch_statistics_once_per_feature():
    """Every head reading a feature normalizes its channels with the same batch statistics, so
    planned training computes them once per feature (when it is stored): BC's training forward
    runs a batch-statistics BatchNorm per feature and per unit's inner BN, and each head's
    BatchNorm is one eval-mode pass with those statistics -- the naive module's per-head
    reductions over ever wider concatenations are gone."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class BatchNormCalls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.training = self.eval = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.native_batch_norm.default:
                if args[5]:
                    self.training += 1
                else:
                    self.eval += 1
            return func(*args, **(kwargs or {}))

    planned, naive, shape = pair(SPECS_BY_NAME["densenet_bc"])
    x = torch.randn((2,) + shape)
    blocks = (planned.block1, planned.block2, planned.block3)
    units, features = sum(len(b) for b in blocks), sum(len(b) + 1 for b in blocks)
    for model, training, evals in ((planned.train(), features + units, units + 3), (naive.train(), 2 * units + 3, 0)):
        calls = BatchNormCalls()
        with calls:
            model(x)
        assert (calls.training, calls.eval) == (training, evals)


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_fused_heads_under_autocast(compiled):
    """bfloat16 autocast (CPU): the fused head's convolution runs in bfloat16 and its backward
    casts back: the float32 parameters get float32 gradients as close to float32 training's as
    the naive module's are (bfloat16 alone puts both about 25% off). Compiled (aot_eager), the
    head normalizes the bfloat16 concatenation with float32 statistics."""
    planned, naive, shape = pair(SPECS_BY_NAME["densenet_bc"], precision="autocast")  # bf16 on any CPU
    exact = copy.deepcopy(naive).train()
    x = torch.randn((4,) + shape, generator=torch.Generator().manual_seed(0))
    weighted_backward(exact, x)
    torch._dynamo.reset()
    for m in (planned, naive):
        m.train()
        run = torch.compile(m, fullgraph=True, backend="aot_eager") if compiled and m is planned else m
        with torch.autocast("cpu", dtype=torch.bfloat16):
            weighted_backward(run, x)
    assert all(p.grad.dtype == torch.float32 for p in planned.parameters())
    want = torch.cat([p.grad.flatten() for p in exact.parameters()])

    def error(m):
        return ((torch.cat([p.grad.flatten() for p in m.parameters()]) - want).norm() / want.norm()).item()

    assert error(planned) <= 1.25 * error(naive)


POOL_SPEC = """
network t() {{
    input(3, 8, 8)
    stem: conv(8, 3)
    block(3, dense) {{ bn; relu; conv(8, 1); bn; relu; conv(4, 3) }}
    bn; relu; conv(10, {kernel}); {pool}
    bn; relu; gap
    fc: linear(5)
}}
"""


class _TenChannelConvs:
    """The spatial size of every convolution, forward and backward, whose weight has 10 outputs."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        sizes = self.sizes = set()

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func is torch.ops.aten.convolution.default and args[1].shape[0] == 10:
                    sizes.add(tuple(args[0].shape[2:]))
                if func is torch.ops.aten.convolution_backward.default and args[2].shape[0] == 10:
                    sizes.add(tuple(args[1].shape[2:]))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()


@pytest.mark.parametrize(
    "kernel, pool, conv_size",
    [
        (1, "avgpool(2)", (4, 4)),
        (1, "avgpool(3, stride=2)", (3, 3)),  # overlapping windows: still an average of pixels
        (1, "avgpool(2, pad=1)", None),  # zero padding: the conv's bias would not be averaged in
        (1, "avgpool(3, stride=2, ceil=true)", None),
        (3, "avgpool(2)", None),  # a 3x3 conv mixes neighbours
        (1, "maxpool(2)", None),
    ],
)
def test_average_pool_runs_before_a_transition_conv(write_spec, kernel, pool, conv_size):
    """A 1x1 conv followed by an unpadded average pool is the same map either way round, so the
    plan ends the block output's head at the pool (``pool_before_conv``) and the module runs the
    conv on the pooled map (``conv_size``) -- in eval, in the training forward and in its
    backward -- and keeps the written order where they do not commute. The IR (its FLOPs) is the
    network as written; outputs, gradients and running statistics equal the naive module's."""
    from netdsl.ir.plan import pool_before_conv, segments

    spec = write_spec(POOL_SPEC.format(kernel=kernel, pool=pool))
    graph = compile_spec(spec)
    conv = next(n for n, d in graph.nodes(data=True) if d["kind"] == "conv" and d["attrs"]["out"] == 10)
    after = next(iter(graph.successors(conv)))
    commutes = conv_size is not None
    assert (pool_before_conv(graph, conv) == after) is commutes
    head = next(chain for chain in segments(graph).values() if conv in chain or chain[-1] in graph.predecessors(conv))
    assert (head[-1] == after) is commutes
    assert graph.graph["total_flops"] == compile_spec(spec, opt=0).graph["total_flops"]

    planned, naive = build_model(spec, seed=1).double(), build_model(spec, seed=1, opt=0).double()
    naive.load_state_dict(planned.state_dict())
    x = torch.randn((3, 3, 8, 8), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weighted_backward(naive, x)
    convs = _TenChannelConvs()
    with convs.mode:
        weighted_backward(planned, x)
    assert_same_training(planned, naive)
    assert convs.sizes == {conv_size or (8, 8)}  # forward, and backward's weight and input gradients
    randomize_bn(planned, naive)
    planned.eval(), naive.eval()
    convs = _TenChannelConvs()
    with torch.no_grad(), convs.mode:
        out = planned(x)
    assert convs.sizes == {conv_size or (8, 8)}
    with torch.no_grad():
        assert torch.allclose(out, naive(x), rtol=1e-10, atol=1e-12)


def test_buffer_gradient_sums_start_afresh_in_each_backward_pass():
    """The heads add their input gradients into one sum per buffer and each feature's ``_Claim``
    hands on its channels after all its readers: the sum starts afresh in each backward pass, so
    ``autograd.grad`` to the input equals the naive module's, and two passes over one retained
    graph give the naive module's two passes."""
    planned, naive, shape = pair(SPECS_BY_NAME["densenet_bc"])
    x = torch.randn((3,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    for m in (planned, naive):
        m.double().train()
    got, want = (torch.autograd.grad(m(x).square().sum(), x)[0] for m in (planned, naive))
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    for m in (planned, naive):
        loss = m(x.detach()).square().sum()
        loss.backward(retain_graph=True)
        loss.backward()
    assert_same_training(planned, naive)


def test_a_transition_behind_a_window_read_pools_first():
    """SparseNet's second transition reads a window of its block (a split read): its head runs
    on to the average pool too, in the plan and in the generated code."""
    graph = compile_spec("sparsenet_bc_v1")
    pooled = [c for c in segments(graph).values() if graph.nodes[c[-1]]["kind"] == "avgpool"]
    assert len(pooled) == 2 and all(pool_before_conv(graph, c[2]) == c[3] for c in pooled)
    source = torch_source("sparsenet_bc_v1")
    assert source.count("children(), (2, 2)") == 2 and "F.avg_pool2d(sparse_transition" not in source
