#!/usr/bin/env bash
# The generated module against the hand-written DenseNet-BC-100 on a CUDA GPU: eager and
# torch.compile (also mode="reduce-overhead", CUDA graphs), fp32 and bf16/fp16 autocast,
# channels_last (netdsl pinned to the row's layout, the reference moved to it), and a forward
# under torch.cuda.set_sync_debug_mode("error") to show that the
# generated code makes no host synchronisation. Prints one markdown table.
#
#     bash benchmarks/gpu.sh            # needs a CUDA build of torch and a GPU
#     ROUNDS=20 BATCH=256 bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python - <<'EOF'
import copy, os, statistics, sys, time
import torch
sys.path.insert(0, "benchmarks")
import netdsl
from reference_densenet import DenseNet

assert torch.cuda.is_available(), "benchmarks/gpu.sh needs a CUDA GPU"
dev = torch.device("cuda")
rounds = int(os.environ.get("ROUNDS", "10"))
batch = int(os.environ.get("BATCH", "256"))
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, batch {batch}, rounds {rounds}\n")

def timed(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def step(model, opt, x, y, dtype):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

def infer(model, x, dtype):
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        model(x)

rows = []
for fmt in (torch.contiguous_format, torch.channels_last):
    for dtype in (None, torch.bfloat16, torch.float16):
        for mode in ("eager", "default", "reduce-overhead"):
            res = {}
            # netdsl pinned to the row's layout (its own choice, memory_format="auto", is channels_last)
            pin = "channels_last" if fmt == torch.channels_last else "contiguous"
            for name, make in (("netdsl", lambda: netdsl.build_model("densenet_bc100_k12", memory_format=pin)),
                               ("reference", lambda: DenseNet([16, 16, 16], 12, 10, imagenet=False))):
                torch._dynamo.reset()
                m = make().to(dev, memory_format=fmt)
                x = torch.randn(batch, 3, 32, 32, device=dev).to(memory_format=fmt)
                y = torch.randint(0, 10, (batch,), device=dev)
                run = m if mode == "eager" else torch.compile(m, mode=None if mode == "default" else mode)
                m.eval()
                t_eval = timed(lambda: infer(run, x, dtype))
                m.train()
                opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                t_train = timed(lambda: step(run, opt, x, y, dtype))
                res[name] = (t_eval, t_train)
            rows.append((str(fmt).split(".")[-1], str(dtype).split(".")[-1], mode, res))

print("| layout | autocast | mode | eval netdsl / ref (ms) | ratio | train netdsl / ref (ms) | ratio |")
print("|---|---|---|---|---|---|---|")
for fmt, dtype, mode, r in rows:
    (ne, nt), (re_, rt) = r["netdsl"], r["reference"]
    print(f"| {fmt} | {dtype} | {mode} | {ne*1e3:.2f} / {re_*1e3:.2f} | {ne/re_:.2f}x | {nt*1e3:.2f} / {rt*1e3:.2f} | {nt/rt:.2f}x |")

m = netdsl.build_model("densenet_bc100_k12").to(dev).eval()
x = torch.randn(8, 3, 32, 32, device=dev)
torch.cuda.set_sync_debug_mode("error")
with torch.no_grad():
    m(x)
m.train()
m(x).sum().backward()
torch.cuda.set_sync_debug_mode("default")
print("\nno host synchronisation in eval forward or training forward+backward (set_sync_debug_mode('error') passed)")
EOF
