"""One prepared GPU check of the training core (5 minutes on one H100/H200 by default).

Run from the repository root on a machine with one CUDA GPU:

    PYTHONPATH=. python tests/benchmarks/gpu_check.py --out gpu_check.json [--budget 290]

What it measures, in this order (each part is skipped, with a note, when the time budget is
spent; the JSON summary is rewritten after every part, so a killed run keeps what it had):

1. correctness on the GPU: the batched forward against HookedTransformer (max |logit
   difference|), and a K = 4 adder run with the step as a CUDA graph against the same run
   eager (max |weight difference| after 300 steps);
2. `adder-777` models trained together for a fixed number of steps at K = 1, 16, 64 and 256
   (model-steps per second, CUDA graphs on; K = 256 also eager);
3. `nanda` to 10,000 epochs with default logging, whole process (`grokscope train`, wall
   time and the first epoch with test accuracy >= 0.99), with and without CUDA graphs;
4. the TransformerLens loop on the same GPU: a HookedTransformer, full batch, AdamW, no
   evaluation (ms per epoch), against grokscope's step in the same process;
5. the full `adder-777` recipe (27,000 steps) for 256 seeds, with its default logging and
   250 checkpoints per run: wall time, models per hour, and how many seeds reach >= 99%
   exact match (with a Wilson interval). Cut off at the budget and extrapolated if needed
   (on an H200 parts 1-4 take ~155 s, so the default budget leaves the full run ~120 s).

A GPU machine may have PyTorch but not transformer-lens or plotly (the task packages import
plotly for their figures). Bring them as wheels, downloaded here beforehand for the
machine's Python (3.12 on this project's GPU machines), e.g.

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux2014_x86_64 -d .whl transformer-lens==3.9.0 plotly==7.1.0 \\
        datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 better-abc==0.0.3 \\
        fancy-einsum==0.0.3 beartype==0.23.1 typeguard==4.6.1

and there: `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` and
`PYTHONPATH=.:/tmp/site`. Training itself needs neither transformer-lens nor a display.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from grokscope.sweep_report import wilson_interval

START = time.time()
DEVICE = "cuda"
DRY = False  # --dry-run: every part on the CPU at toy sizes, to check the script itself


def correctness(summary: dict) -> None:
    from grokscope import batched
    from grokscope.config import preset
    from grokscope.model import build_model
    from grokscope.trainer import train_many

    out = {}
    for name, (vocab, vocab_out, ctx, first, length) in {"mini-grok": (60, 59, 3, 2, 3),
                                                          "adder-777": (14, 14, 35, 21, 33)}.items():
        cfg = preset(name).model
        arch = batched.Architecture.from_config(cfg, vocab, vocab_out, ctx)
        models = [build_model(dataclasses.replace(cfg, seed=s), vocab, vocab_out, ctx, DEVICE) for s in (1, 2)]
        weights = batched.stack_state_dicts(arch, [m.state_dict() for m in models], DEVICE)
        tokens = torch.randint(0, vocab_out, (256, length), device=DEVICE)
        with torch.no_grad():
            ref = torch.stack([m(tokens)[:, first:] for m in models])
            fast = batched.answer_forward(arch, weights, tokens, first)[0]
        out[f"{name}_max_abs_logit_diff_vs_hooked"] = float((fast - ref).abs().max())
    cfg = preset("adder-777").replace(epochs=30 if DRY else 300, n_checkpoints=2, n_log_checkpoints=0,
                                      log_every=10 if DRY else 100, device=DEVICE)
    cfgs = [cfg.replace(seed=s) for s in range(4)]
    graphed = train_many(cfgs, [f"/tmp/gc/graph{i}" for i in range(4)], force=True, progress=False)
    eager = train_many(cfgs, [f"/tmp/gc/eager{i}" for i in range(4)], force=True, progress=False, cuda_graphs=False)
    from grokscope.run import max_abs_weight_difference

    out["graph_vs_eager_max_abs_weight_diff_300_steps"] = max(
        max_abs_weight_difference(g, e) for g, e in zip(graphed, eager))
    out["graph_vs_eager_final_test_loss"] = [[float(g.metrics["test_loss"].iloc[-1]),
                                              float(e.metrics["test_loss"].iloc[-1])] for g, e in zip(graphed, eager)]
    summary["correctness"] = out


def capture_self_test(summary: dict) -> None:
    """Capture one K = 4 adder step and one nanda step as CUDA graphs, directly (no fallback),
    and record any error with its traceback."""
    import traceback

    from grokscope import batched
    from grokscope.config import preset
    from grokscope.tasks import make_task
    from grokscope.trainer import GraphedStep, make_optimizer, train_step

    out = {}
    for name, K in (("adder-777", 4), ("nanda", 1)):
        try:
            cfg = preset(name)
            task = make_task(cfg.task, batch_size=cfg.train.batch_size)
            arch = batched.Architecture.for_task(cfg.model, task)
            weights = {n: w.requires_grad_(True) for n, w in batched.init_weights(arch, list(range(K)), DEVICE).items()}
            opt = make_optimizer(weights, cfg.train, capturable=True)
            tokens, labels = task.train_data(0, torch.arange(K), DEVICE)

            def step(t, lb):
                train_step(arch, weights, opt, t, lb, task.answer_start, cfg.train, zero_grad=False)

            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step(tokens, labels)
                    opt.zero_grad(set_to_none=True)
            torch.cuda.current_stream().wait_stream(side)
            graphed = GraphedStep(step, tokens, labels, opt)
            for _ in range(5):
                graphed(tokens, labels)
            sync()
            out[name] = "captured and replayed"
        except Exception:  # noqa: BLE001
            out[name] = traceback.format_exc()[-1500:]
    summary["capture_self_test"] = out


def throughput(summary: dict, steps: int) -> None:
    from grokscope.config import preset
    from grokscope.trainer import train_many

    out = {}
    base = preset("adder-777").replace(epochs=steps, n_checkpoints=2, n_log_checkpoints=0, log_every=10**9,
                                       device=DEVICE)
    points = ((1, True), (4, False)) if DRY else ((1, True), (16, True), (64, True), (256, True), (256, False))
    for K, graphs in points:
        cfgs = [base.replace(seed=s) for s in range(K)]
        sync()
        t = time.time()
        try:
            train_many(cfgs, [f"/tmp/gt/{K}-{graphs}-{i}" for i in range(K)], force=True, progress=False,
                       cuda_graphs=graphs)
        except Exception as e:  # noqa: BLE001 - the other K still run
            out[f"K{K}_{'graph' if graphs else 'eager'}"] = f"{type(e).__name__}: {e}"[:300]
            continue
        sync()
        dt = time.time() - t
        out[f"K{K}_{'graph' if graphs else 'eager'}"] = {
            "seconds": round(dt, 2), "ms_per_step": round(dt / steps * 1e3, 3),
            "model_steps_per_s": round(K * steps / dt, 1),
            "models_per_hour_at_27000_steps": round(K * steps / dt * 3600 / 27000, 1)}
        summary["throughput_adder777"] = out
        shutil.rmtree("/tmp/gt", ignore_errors=True)


def nanda_whole_process(summary: dict, graphs: bool) -> None:
    out_dir = Path("/tmp/nanda-" + ("graph" if graphs else "eager"))
    cmd = [sys.executable, "-m", "grokscope.cli", "train", "--preset", "nanda", "--device", DEVICE, "--epochs",
           "20" if DRY else "10000", "--out", str(out_dir), "--force", "--no-progress"] + ([] if graphs else ["--no-cuda-graphs"])
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    grok = next((r["step"] for r in rows if r["test_acc"] >= 0.99), None)
    summary[f"nanda_10k_{'graph' if graphs else 'eager'}"] = {
        "wall_s_whole_process": round(wall, 1), "returncode": proc.returncode, "grok_epoch_test_acc_0.99": grok,
        "final_test_acc": rows[-1]["test_acc"], "checkpoints": len(list((out_dir / "checkpoints").iterdir())),
        "metrics_lines": len(rows), "stderr_tail": proc.stderr[-300:]}


def tl_loop(summary: dict, epochs: int = 500) -> None:
    from grokscope import batched
    from grokscope.config import preset
    from grokscope.losses import cross_entropy
    from grokscope.model import build_model_for_task
    from grokscope.tasks import make_task
    from grokscope.trainer import make_optimizer, train_step

    cfg = preset("nanda")
    task = make_task(cfg.task)
    model = build_model_for_task(cfg.model, task, device=DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    tokens, labels = (x.to(DEVICE) for x in (task.tokens[task.train_idx], task.labels[task.train_idx]))

    def tl_step():
        loss = cross_entropy(model(tokens)[:, -1], labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    arch = batched.Architecture.for_task(cfg.model, task)
    weights = {n: w.requires_grad_(True) for n, w in batched.init_weights(arch, [999], DEVICE).items()}
    ours_opt = make_optimizer(weights, cfg.train)
    batch = task.train_data(0, torch.tensor([1]), DEVICE)

    def ours_step():
        train_step(arch, weights, ours_opt, batch[0], batch[1], task.answer_start, cfg.train)

    out = {}
    for name, fn in (("transformer_lens_loop", tl_step), ("grokscope_eager_step", ours_step)):
        for _ in range(2 if DRY else 20):
            fn()
        sync()
        t = time.time()
        for _ in range(epochs):
            fn()
        sync()
        out[f"{name}_ms_per_epoch"] = round((time.time() - t) / epochs * 1e3, 3)
    summary["nanda_step_same_process"] = out


def full_adder(summary: dict, budget_s: float, seeds: int = 256) -> None:
    root = Path("/tmp/adder256")
    shutil.rmtree(root, ignore_errors=True)
    code = ("import sys\nfrom grokscope.config import preset\nfrom grokscope.trainer import train_many\n"
            f"cfgs = [preset('adder-777').replace(seed=s, device={DEVICE!r}{', epochs=40' if DRY else ''}) "
            f"for s in range({seeds})]\n"
            f"train_many(cfgs, [f'{root}/seed{{s:03d}}' for s in range({seeds})], progress=False)\n")
    t = time.time()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=budget_s)
        finished, err = proc.returncode == 0, proc.stderr[-500:]
    except subprocess.TimeoutExpired:
        finished, err = False, "cut off at the budget"
    wall = time.time() - t
    finals = []
    for s in range(seeds):
        path = root / f"seed{s:03d}" / "metrics.jsonl"
        if path.exists():
            lines = path.read_text().splitlines()
            if lines:
                try:
                    finals.append(json.loads(lines[-1]))
                except json.JSONDecodeError:
                    finals.append(json.loads(lines[-2]))
    total = 40 if DRY else 27000
    last_step = min((r["step"] for r in finals), default=0)
    solved = sum(r["test_acc"] >= 0.99 for r in finals)
    out = {"finished": finished, "wall_s": round(wall, 1), "seeds": seeds, "last_step_all": last_step,
           "error_tail": err if not finished else None}
    if last_step:
        out["est_wall_s_for_all_steps"] = round(wall * total / last_step, 1)
        out["est_models_per_hour"] = round(seeds * 3600 / (wall * total / last_step), 1)
    if finished:
        lo, hi = wilson_interval(solved, len(finals))
        out.update({"seeds_test_acc_ge_0.99": solved, "of": len(finals), "wilson95": [round(lo, 3), round(hi, 3)],
                    "final_test_acc": [round(r["test_acc"], 4) for r in finals]})
    summary["adder777_full_recipe"] = out


def sync() -> None:
    """Wait for the GPU (nothing on the CPU)."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    global DEVICE, DRY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--budget", type=float, default=290, help="seconds for the whole script")
    ap.add_argument("--steps", type=int, default=300, help="steps per throughput point")
    ap.add_argument("--dry-run", action="store_true", help="every part on the CPU at toy sizes")
    args = ap.parse_args()
    if args.dry_run:
        DEVICE, DRY, args.steps = "cpu", True, 5
    summary = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (dry run)",
               "torch": torch.__version__}

    def save():
        summary["elapsed_s"] = round(time.time() - START, 1)
        Path(args.out).write_text(json.dumps(summary, indent=1))

    parts = [("capture_self_test", lambda: capture_self_test(summary) if not DRY else None),
             ("correctness", lambda: correctness(summary)),
             ("throughput", lambda: throughput(summary, args.steps)),
             ("nanda_graph", lambda: nanda_whole_process(summary, True)),
             ("nanda_eager", lambda: nanda_whole_process(summary, False)),
             ("tl_loop", lambda: tl_loop(summary, 3 if DRY else 500)),
             ("full_adder", lambda: full_adder(summary, args.budget - (time.time() - START) - 15, 3 if DRY else 256))]
    for name, fn in parts:
        if time.time() - START > args.budget - 30:
            summary.setdefault("skipped", []).append(name)
            continue
        t = time.time()
        try:
            with warnings.catch_warnings(record=True) as seen:  # e.g. a CUDA graph capture that fell back
                warnings.simplefilter("always")
                fn()
            messages = sorted({str(w.message)[:200] for w in seen if "graph" in str(w.message).lower()})
            if messages:
                summary.setdefault("warnings", {})[name] = messages
        except Exception as e:  # noqa: BLE001 - one part failing must not lose the others
            summary.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"[:500]
        summary.setdefault("part_seconds", {})[name] = round(time.time() - t, 1)
        print(name, json.dumps(summary.get(name, ""))[:300], f"{time.time() - START:.0f}s", flush=True)
        save()
    save()
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
