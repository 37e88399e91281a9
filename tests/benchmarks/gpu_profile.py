"""A short GPU profile of the batched adder step (about 90 s): where K = 256 spends its time.

Times the `adder-777` step at K = 256 with the einsum attention and with the fused kernel
(`grokscope.batched.FUSED_ATTENTION`), eager and as a CUDA graph; lists the top CUDA kernels
of the eager einsum step; times the `nanda` step as a CUDA graph against the
TransformerLens loop in the same process. Writes a JSON summary.

    PYTHONPATH=. python tests/benchmarks/gpu_profile.py --out gpu_profile.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from grokscope import batched
from grokscope.config import preset
from grokscope.tasks import make_task
from grokscope.trainer import GraphedStep, make_optimizer, train_step


def setup(name: str, K: int, capturable: bool):
    cfg = preset(name)
    task = make_task(cfg.task, batch_size=cfg.train.batch_size)
    arch = batched.Architecture.for_task(cfg.model, task)
    weights = {n: w.requires_grad_(True) for n, w in batched.init_weights(arch, list(range(K)), "cuda").items()}
    opt = make_optimizer(weights, cfg.train, capturable=capturable)
    tokens, labels = task.train_data(20_000, torch.arange(K), "cuda")

    def step(t=tokens, lb=labels, zero=True):
        train_step(arch, weights, opt, t, lb, task.answer_start, cfg.train, zero_grad=zero)
    return step, opt, tokens, labels


def timed(fn, n: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.time()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.time() - t) / n * 1e3


def graphed(name: str, K: int):
    step, opt, tokens, labels = setup(name, K, True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    g = GraphedStep(lambda t, lb: step(t, lb, False), tokens, labels, opt)
    return lambda: g(tokens, labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_profile.json")
    args = ap.parse_args()
    out = {"device": torch.cuda.get_device_name(0)}
    for fused in (False, True):
        batched.FUSED_ATTENTION["cuda"] = fused
        key = "fused" if fused else "einsum"
        try:
            out[f"adder_K256_{key}_eager_ms"] = round(timed(setup("adder-777", 256, False)[0], 10), 2)
            out[f"adder_K256_{key}_graph_ms"] = round(timed(graphed("adder-777", 256), 20), 2)
            out[f"adder_K16_{key}_graph_ms"] = round(timed(graphed("adder-777", 16), 50), 3)
        except Exception as e:  # noqa: BLE001
            out[f"adder_{key}_error"] = f"{type(e).__name__}: {e}"[:300]
        print(json.dumps(out), flush=True)
    batched.FUSED_ATTENTION["cuda"] = False
    step = setup("adder-777", 256, False)[0]
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    rows = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:15]
    out["top_kernels_K256_eager_einsum"] = [[e.key[:90], round(e.device_time_total / 3 / 1e3, 3), e.count // 3]
                                             for e in rows]  # name, ms per step, calls per step
    out["nanda_graph_ms_per_epoch"] = round(timed(graphed("nanda", 1), 300), 3)
    print(json.dumps(out, indent=1), flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
