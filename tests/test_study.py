"""SparseNet's Fig. 10 path study: five overrides of one spec whose parameter counts differ
exactly as their connection sets' input widths do."""

import netdsl

SPLITS = [(14, 0), (10, 4), (7, 7), (4, 10), (0, 14)]
K = 16


def input_widths(graph):
    """Channels each unit reads, from the IR's connection sets and feature widths alone."""
    out = []
    for b in graph.graph["blocks"]:
        width = {f.index: graph.nodes[f.node]["shape"][0] for f in b.features}
        out += [sum(width[j] for j in u.reads) for u in b.units]
    return out


def test_fig10_counts_follow_connection_sets():
    graphs = {s: netdsl.compile_spec("specs/sparsenet_study.net", {"far": s[0], "near": s[1]}) for s in SPLITS}
    sets = {s: [u.reads for b in g.graph["blocks"] for u in b.units] for s, g in graphs.items()}
    assert len({tuple(v) for v in sets.values()}) == 5  # five different connection patterns
    ref = graphs[(7, 7)]
    for s, g in graphs.items():
        # each unit is BN (2 per input channel) + 3x3 conv to k (9k per input channel)
        extra_in = sum(a - b for a, b in zip(input_widths(g), input_widths(ref)))
        assert g.graph["total_params"] - ref.graph["total_params"] == (2 + 9 * K) * extra_in
    # only 0-14 stops reading the wide block input x_0 in late units, so only its count differs
    assert graphs[(0, 14)].graph["total_params"] < graphs[(7, 7)].graph["total_params"]
    assert graphs[(14, 0)].graph["total_params"] == graphs[(4, 10)].graph["total_params"]
