"""A few lines of the Python API: train a small run, reload it, look at one checkpoint.

The run goes to a temporary folder (pass a path as the first argument to keep it elsewhere).
"""

import sys
import tempfile
from pathlib import Path

import grokscope

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="grokscope-example-")) / "d7"
run = grokscope.train(grokscope.preset("modular-d7").replace(epochs=300), out, force=True)
run = grokscope.load_run(out)
print(run, run.task)
print(run.metrics.tail(3))
model = run.model_at(run.steps[-1])  # a TransformerLens HookedTransformer
logits, cache = model.run_with_cache(run.task.tokens[run.task.test_idx])
print("test accuracy:", (logits[:, -1].argmax(-1) == run.task.labels[run.task.test_idx]).float().mean().item())
print("MLP activations at '=':", cache["blocks.0.mlp.hook_post"][:, -1].shape)
kf = grokscope.key_frequencies(model, run.task)
print("key frequencies:", kf.freqs, "restricted loss:", grokscope.restricted_loss(model, run.task, kf) if kf.freqs else "-")
