"""The runtime helpers of the generated torch module: real code, linted, type-checked and tested
here, and copied into every generated file that calls them (``inspect.getsource``; the code
generator registers each one as it emits a call, as torch.fx's ``add_global`` does). They depend
on torch alone and on each other; what each needs from this module's globals is read from its own
source when it is embedded (:mod:`netdsl.backends.torch.file`).

Their names start with an underscore: in a generated file they sit beside the network's own
names, and no spec variable may shadow them (the code generator reserves every name here).

Why the planned blocks run as they do (buffers, heads recomputed in backward, the batch
statistics computed once per feature) is in :mod:`netdsl.backends.torch.codegen`; the measured
figures behind the choices are in docs/performance.md.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

from ...ops.norm import bn_scale_shift, fold_into_conv


def _buffer(like, channels):
    """A block's feature buffer: batch, size, dtype, device and layout (NCHW, NHWC) of ``like``."""
    n, _, h, w = like.shape
    fmt = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty((n, channels, h, w), dtype=like.dtype, device=like.device, memory_format=fmt)


def _memory_format(x):
    """The layout of a 4-D tensor: channels_last (NHWC) or contiguous (NCHW, also for any other)."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _slow_autocast(x):
    """The caller's autocast dtype where ``x``'s device has no fast convolution for it, else None."""
    device, dtype = x.device.type, torch.get_autocast_dtype(x.device.type)
    on = torch.is_autocast_enabled(device) and x.dtype != torch.float64  # autocast leaves float64 alone
    return dtype if on and not _fast_16bit(device, dtype) else None


@torch.compiler.assume_constant_result  # a fact of the machine: compiled, a constant
def _fast_16bit(device, dtype):
    """CPUs: oneDNN has a kernel (else torch's reference one, 6-8x float32); CUDA: tensor cores."""
    if device == "cuda":
        return torch.cuda.get_device_capability() >= ((8, 0) if dtype == torch.bfloat16 else (7, 0))
    mkldnn, bf16 = torch.ops.mkldnn, dtype == torch.bfloat16
    return device != "cpu" or (mkldnn._is_mkldnn_bf16_supported() if bf16 else mkldnn._is_mkldnn_fp16_supported())


def _read(buf, runs):
    """The channel runs ``((start, stop), ...)`` of ``buf`` concatenated (a view for one run)."""
    n, _, h, w = buf.shape
    strided = torch.compiler.is_compiling() and not torch.compiler.is_exporting()  # inductor: slices, a cat per unit
    v = [buf.as_strided((n, e - s, h, w), buf.stride(), s * buf.stride(1)) if strided else buf[:, s:e] for s, e in runs]
    return v[0] if len(v) == 1 else torch.cat(v, 1)  # (exporting: slices, ONNX has no strides)


def _store(buf, a, b, y, feats):
    """``y`` into channels [a, b) of ``buf``; with autograd ``(y, its batch mean, var, _Claim, a)`` into ``feats``."""
    buf[:, a:b] = y.detach()
    if not torch.is_grad_enabled():
        return feats.append(None)
    if torch.compiler.is_compiling():  # inductor fuses it (autocast: the upcast too) into one reduction
        z = y.detach() if y.dtype == torch.float64 else y.detach().float()
        return feats.append((y, *reversed(torch.var_mean(z, (0, 2, 3), correction=0)), None, a))
    one = None if y.dtype in (torch.float32, torch.float64) else torch.ones(y.shape[1], device=y.device)
    _, mean, invstd = torch.ops.aten.native_batch_norm(y.detach(), one, None, None, None, True, 0.0, 0.0)
    feats.append((y, mean, invstd.pow_(-2), _Claim.apply(y, vars(buf), a), a))  # eager: BN's fast kernel


class _Claim(torch.autograd.Function):
    """A feature's stand-in for the heads that read it from a buffer: they add their gradients into one sum
    shaped as the buffer, autograd runs this after all of them, and it hands on the feature's channels."""

    @staticmethod
    def forward(ctx, y, sums, start):
        ctx.sums, ctx.span = sums, slice(start, start + y.shape[1])
        return y.new_empty(0)

    @staticmethod
    def backward(ctx, _):
        return ctx.sums["grad"][:, ctx.span], None, None


def _statistics(bn, feats):
    """The batch's (mean, var) from its features', updating ``bn``'s running ones; eval: those."""
    if not bn.training and bn.running_mean is not None:  # as nn.BatchNorm decides
        return bn.running_mean, bn.running_var
    mean, var = torch.cat([f[1] for f in feats]), torch.cat([f[2] for f in feats])
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        m = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        n = feats[0][0].numel() // feats[0][0].shape[1]
        bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        bn.running_var.mul_(1 - m).add_(var.detach(), alpha=m * n / (n - 1))
    return mean, var


def _buffer_head(head, feats, buf, runs, bn, conv, pool=None):
    """``head`` (BN -> ReLU [-> conv [-> avg pool]]; None: ``bn``, ``conv``, ``pool``) on ``buf``'s runs."""
    if not torch.is_grad_enabled() and head is not None:
        return head(_read(buf, runs))
    if not torch.is_grad_enabled():  # the modules themselves (a block output's consumer has no method)
        y = torch.relu_(bn(_read(buf, runs)))
    elif torch.compiler.is_compiling():  # on the concatenation (dynamo: no set_); the conv is inductor's
        x, stats = torch.cat([f[0] for f in feats], 1), _statistics(bn, feats)
        y = _BatchNormReluConv.apply(x, None, *stats, bn, None, None, bn.weight, bn.bias, None, None)
    else:  # eager: its gradients flow to the features' claims
        w, b = (None, None) if conv is None else (conv.weight, conv.bias)
        args = (buf, runs, *_statistics(bn, feats), bn, conv, pool, bn.weight, bn.bias, w, b)
        return _BatchNormReluConv.apply(*args, *[f[3] for f in feats])
    return y if conv is None else conv(y if pool is None else F.avg_pool2d(y, *pool))


class _BatchNormReluConv(torch.autograd.Function):
    """conv(relu(bn(x))), x runs of a buffer: saves the buffer, not x or relu(bn(x)) (recomputed)."""

    @staticmethod
    def forward(ctx, buf, runs, mean, var, bn, conv, pool, bn_w, bn_b, w, b, *claims):
        ctx.runs, ctx.eps, ctx.claims, ctx.conv, ctx.pool = runs, bn.eps, len(claims), conv, pool
        ctx.batch, ctx.sums = bn.training or bn.running_mean is None, runs and vars(buf)  # batch stats: differentiated
        x = buf if runs is None else torch.cat([buf[:, s:e] for s, e in runs], 1)  # dense (and 16-bit dx): faster
        y = torch.relu_(F.batch_norm(x, mean, var, bn_w, bn_b, False, 0.0, bn.eps))
        if runs is None:  # compiled, buf the concatenation: saved with y (docs/performance.md)
            ctx.save_for_backward(x, mean, var, bn_w, bn_b, w, b, y)
        else:  # saved as an alias with its own version counter: the later units' writes do not bump it
            alias = buf.new_empty(0).set_(buf.untyped_storage(), buf.storage_offset(), buf.shape, buf.stride())
            ctx.save_for_backward(alias, mean, var, bn_w, bn_b, w, b, None)
        yp = y if pool is None else F.avg_pool2d(y, *pool)  # a pool that commutes: the conv on a quarter
        return y if conv is None else F.conv2d(yp, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (buf, mean, var, bn_w, bn_b, w, b, y), gw, gb = ctx.saved_tensors, None, None
        x = buf if ctx.runs is None else torch.cat([buf[:, s:e] for s, e in ctx.runs], 1)
        if y is None:  # recomputed, so ours: the masked gradient is written over it (an allocation less)
            y = torch.relu_(torch.ops.aten.native_batch_norm(x, bn_w, bn_b, mean, var, False, 0.0, ctx.eps)[0])
        if ctx.conv is not None:  # under autocast the conv ran in the gradient's dtype
            c, bias, p = ctx.conv, None if b is None else [b.shape[0]], ctx.pool
            args = (bias, c.stride, c.padding, c.dilation, False, [0, 0], c.groups, [True, True, b is not None])
            yp = (y if p is None else F.avg_pool2d(y, *p)).to(grad.dtype)
            grad, gw, gb = torch.ops.aten.convolution_backward(grad, yp, w.to(grad.dtype), *args)
            grad, gw, gb = grad.to(y.dtype), gw.to(w.dtype), None if b is None else gb.to(b.dtype)
            grad = grad if p is None else torch.ops.aten.avg_pool2d_backward(grad, y, *p, 0, False, True, None)
        grad = torch.ops.aten.threshold_backward(grad, y, 0, **({} if ctx.runs is None else {"grad_input": y}))
        stats = (None, None, mean, (var + ctx.eps).rsqrt()) if ctx.batch else (mean, var, None, None)
        mask = [True, bn_w is not None, bn_b is not None]
        gx, g_bn_w, g_bn_b = torch.ops.aten.native_batch_norm_backward(grad, x, bn_w, *stats, ctx.batch, ctx.eps, mask)
        if ctx.runs is not None:  # into the buffer's gradient sum, a new one per backward pass (``_Claim``)
            if ctx.sums.get("task") != (task := torch._C._current_graph_task_id()):
                ctx.sums.update(task=task, grad=torch.zeros_like(buf))
            for (s, e), g in zip(ctx.runs, gx.split([e - s for s, e in ctx.runs], 1), strict=True):
                ctx.sums["grad"][:, s:e] += g
        return None if ctx.runs else gx, *[None] * 6, g_bn_w, g_bn_b, gw, gb, *[None] * ctx.claims  # compiled: buf is x


def _output(buf, runs, feats):
    """A block's output: its runs of ``buf``; with autograd the concatenation of ``feats``."""
    return torch.cat([f[0] for f in feats], 1) if torch.is_grad_enabled() else _read(buf, runs)


class _KeepBatchNormStats:
    """While a checkpointed head is recomputed in backward, BatchNorm must not count the batch
    twice: its running statistics are put back as they were."""

    def __init__(self, bns):
        self.bns = [m for m in bns if m.track_running_stats]

    def __enter__(self):
        self.saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in self.bns]

    def __exit__(self, *exc):
        with torch.no_grad():
            for m, (mean, var, count) in zip(self.bns, self.saved, strict=True):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def _recompute(head, feats, *bns):
    """head(*feats) keeping only ``feats`` for backward (the memory-efficient DenseNet): the
    concatenation and the per-channel chain after it are recomputed from them in backward."""
    if not torch.is_grad_enabled():
        return head(*feats)
    if torch.compiler.is_compiling():  # the compiled graph updates running statistics once itself
        return checkpoint(head, *feats, use_reentrant=False, context_fn=_keep_convolutions)
    return checkpoint(
        head, *feats, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), _KeepBatchNormStats(bns))
    )


def _keep_convolutions():
    """Compiled, a checkpoint keeps its head's conv output (what the next layer saves anyway)."""
    return create_selective_checkpoint_contexts([torch.ops.aten.convolution.default])


def _batch_norm_eval(x, bn):
    """Eval-mode BatchNorm of a (strided) channel view: one multiply-add pass into a new tensor of its dtype."""
    scale, shift = bn_scale_shift(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    return torch.addcmul(shift.to(x.dtype).view(1, -1, 1, 1), x, scale.to(x.dtype).view(1, -1, 1, 1))


def _clamp_conv_bn_eval(x, bn, conv, bn2):
    """bn2(conv(relu(bn(x)))) in eval mode, ``conv`` unpadded: ``relu(s * x + t) == s * clamp(x, lo, hi) + t`` per
    channel (``lo = -t / s`` where s > 0, ``hi`` where s < 0), so one pass over ``x`` and the rest in the conv."""
    s, t = bn_scale_shift(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    edge, t = torch.where(s == 0, 0.0, -t / s), torch.where(s == 0, t.relu(), t)  # s == 0: relu(t), a constant
    lo, hi = torch.where(s < 0, -float("inf"), edge), torch.where(s > 0, float("inf"), edge)
    w, b = conv.weight * s.view(1, -1, 1, 1), (conv.weight * t.view(1, -1, 1, 1)).sum((1, 2, 3))
    scale, shift = bn_scale_shift(bn2.weight, bn2.bias, bn2.running_mean, bn2.running_var, bn2.eps)
    w, b = fold_into_conv(w, b if conv.bias is None else b + conv.bias, scale, shift)
    y = torch.clamp(x, lo.to(x.dtype).view(1, -1, 1, 1), hi.to(x.dtype).view(1, -1, 1, 1))
    return F.conv2d(y, w.to(y.dtype), b.to(y.dtype), conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv_bn_eval(x, conv, bn):
    """bn(conv(x)) in eval mode as one convolution: the BatchNorm folded into the conv's weights."""
    scale, shift = bn_scale_shift(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    weight, bias = fold_into_conv(conv.weight, conv.bias, scale, shift)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
