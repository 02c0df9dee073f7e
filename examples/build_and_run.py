"""Build a spec, run a batch through it, and print its summary.

python examples/build_and_run.py [SPEC_OR_PRESET] [NAME=VALUE ...]
"""

import sys

import torch

import netdsl
from netdsl.frontend import parse_value
from netdsl.summary import summary_dict


def main(target: str = "specs/sparsenet.net", *sets: str) -> None:
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in sets)}
    model = netdsl.build_model(target, **overrides).eval()
    graph = netdsl.compile_spec(target, **overrides)
    c, h, w = graph.nodes[graph.graph["input"]]["shape"]
    with torch.no_grad():
        logits = model(torch.randn(4, c, h, w))
    info = summary_dict(graph)
    print(f"{info['name']}: input {c}x{h}x{w} -> logits {tuple(logits.shape)}")
    print(f"parameters: {info['params']:,}  FLOPs (MAC): {info['flops']:,}  connections: {info['connections']}")
    for block in info["blocks"]:
        print(f"  {block['name']}: {block['pattern']}, {block['units']} units -> {block['out_shape']}")


if __name__ == "__main__":
    main(*sys.argv[1:])
