"""What a loop over a planned block reads when its units read a window of the block's buffer (as
SparseNet's ``path(far, near)`` reads the first ``far`` and the last ``near`` channels before a
unit's own): the runs and the features in them computed in the loop from two numbers, where per-unit
tables of both would fill dozens of lines. Copied into the generated file like the runtime helpers;
the generator checks, by calling :func:`_window` itself, that it yields exactly the plan's reads."""


def _window(feats, stop, far, near):
    """The runs of the first ``far`` and last ``near`` channels below ``stop``, and the ``feats`` in them."""
    runs = ((0, stop),) if stop <= far + near else ((0, far), (stop - near, stop))
    # a run holds a feature (its start: f[4]) whole or not at all (the generator checks); no autograd: None
    return [f for f in feats if f is None or any(a <= f[4] < b for a, b in runs)], runs
