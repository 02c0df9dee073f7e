"""netdsl's DenseNet-BC against an independent, hand-written torchvision-style DenseNet-BC."""

import torch
import torch.nn.functional as F
from torch import nn

import netdsl


class HandDenseLayer(nn.Module):
    def __init__(self, cin, k):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * k, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(4 * k), nn.Conv2d(4 * k, k, 3, padding=1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class HandDenseNetBC(nn.Module):
    def __init__(self, depth, k, classes):
        super().__init__()
        n = (depth - 4) // 6
        c = 2 * k
        self.conv0 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.stages = nn.ModuleList()  # dense block, transition, dense block, transition, dense block
        for b in range(3):
            self.stages.append(nn.ModuleList(HandDenseLayer(c + i * k, k) for i in range(n)))
            c += n * k
            if b < 2:
                out = c // 2
                conv = nn.Conv2d(c, out, 1, bias=False)
                transition = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), conv, nn.AvgPool2d(2))
                self.stages.append(transition)
                c = out
        self.norm, self.fc = nn.BatchNorm2d(c), nn.Linear(c, classes)

    def forward(self, x):
        x = self.conv0(x)
        for stage in self.stages:
            if isinstance(stage, nn.Sequential):
                x = stage(x)
                continue
            feats = [x]
            for layer in stage:
                feats.append(layer(feats))
            x = torch.cat(feats, 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1), 1))


def test_densenet_bc_equals_hand_written_reference():
    ours = netdsl.build_model("specs/densenet_bc.net", depth=22, k=6, classes=5, seed=3)
    ref = HandDenseNetBC(22, 6, 5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    # Both modules register tensors in the same order: map by position.
    ref_keys, our_vals = list(ref.state_dict()), list(ours.state_dict().values())
    assert len(ref_keys) == len(our_vals)
    ref.load_state_dict(dict(zip(ref_keys, our_vals, strict=True)))
    x = torch.randn(4, 3, 32, 32)
    ours.train(), ref.train()
    assert torch.allclose(ours(x), ref(x), atol=1e-5)  # batch statistics path
    ours.eval(), ref.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_full_size_parameter_count_matches_reference():
    assert (
        netdsl.compile_spec("specs/densenet_bc.net").graph["total_params"]
        == sum(p.numel() for p in HandDenseNetBC(100, 12, 10).parameters())
        == 769_162
    )
