"""SparseNet's Fig. 10 path study: five overrides of one spec, whose parameter counts -- as
``netdsl summary`` reports them -- follow their connection sets: each equals an independent count
of the paper's equation, and two splits differ by exactly the channels their units read."""

import json

import pytest

import netdsl
from netdsl.cli import main
from netdsl.summary import summary_dict

SPLITS = [(14, 0), (10, 4), (7, 7), (4, 10), (0, 14)]
K, BLOCKS, CLASSES = 16, (8, 12, 16), 10
STUDY = "specs/sparsenet_study.net"


def equation_reads(i, far, near):
    """x_i = H([x_0 .. x_{far-1}, x_{i-near} .. x_{i-1}]), everything while i <= far + near."""
    if i <= far + near:
        return set(range(i))
    return set(range(far)) | set(range(i - near, i))


def equation_params(far, near):
    """The study network counted by hand: 3x3 stem to 2k; units BN-ReLU-Conv3x3(k) without bias
    (2 + 9k parameters per input channel); width-keeping transitions BN-ReLU-Conv1x1-AvgPool;
    BN, pooling and a linear classifier."""
    c0 = 2 * K
    total = 3 * 9 * c0
    for b, units in enumerate(BLOCKS):
        width = {0: c0} | {j: K for j in range(1, units + 1)}
        total += sum((2 + 9 * K) * sum(width[j] for j in equation_reads(i, far, near)) for i in range(1, units + 1))
        c0 += units * K  # the block hands on all its features
        if b < len(BLOCKS) - 1:
            total += 2 * c0 + c0 * c0
    return total + 2 * c0 + c0 * CLASSES + CLASSES


@pytest.fixture(scope="module")
def studies():
    return {s: netdsl.compile_spec(STUDY, far=s[0], near=s[1]) for s in SPLITS}


def test_connection_sets_are_the_equations(studies):
    for (far, near), g in studies.items():
        for b in g.graph["blocks"]:
            for u in b.units:
                assert set(u.reads) == equation_reads(u.index, far, near), (far, near, b.name, u.index)
    # five different patterns (they first differ in block 3, the only block longer than the path)
    assert len({repr([b.connection_sets() for b in g.graph["blocks"]]) for g in studies.values()}) == 5


def test_summary_counts_equal_the_equation_and_follow_channels_read(studies, capsys):
    counts = {}
    for s, g in studies.items():
        # what the user runs: netdsl summary specs/sparsenet_study.net --set far=F --set near=N --json
        assert main(["summary", STUDY, "--set", f"far={s[0]}", "--set", f"near={s[1]}", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data == json.loads(json.dumps(summary_dict(g)))
        assert data["params"] == equation_params(*s)
        counts[s] = data
    ref = counts[(7, 7)]
    for data in counts.values():
        extra = data["channels_read"] - ref["channels_read"]
        assert data["params"] - ref["params"] == (2 + 9 * K) * extra
    # Every x_j (j >= 1) is k wide, so a split costs more only by reading the wide block input x_0
    # more often: the four that keep x_0 agree, 0-14 drops it in block 3's units 15 and 16.
    assert len({d["params"] for d in counts.values()}) == 2
    assert counts[(0, 14)]["params"] == ref["params"] - (2 + 9 * K) * 2 * (352 - K)
