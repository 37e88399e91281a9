"""Ten lines of the Python API: train a small run, reload it, look at one checkpoint."""

import grokscope

run = grokscope.train(grokscope.preset("modular-d7").replace(epochs=300), "checkpoints/example-d7", force=True)
run = grokscope.load_run("checkpoints/example-d7")
print(run.metrics.tail(3))
model = run.model_at(run.steps[-1])  # a TransformerLens HookedTransformer
logits, cache = model.run_with_cache(run.task.tokens[run.task.test_idx])
print("test accuracy:", (logits[:, -1].argmax(-1) == run.task.labels[run.task.test_idx]).float().mean().item())
print("MLP activations at '=':", cache["blocks.0.mlp.hook_post"][:, -1].shape)
