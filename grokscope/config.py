"""Dataclass configs for a run: what task, which model, how to train.

A `RunConfig` is everything needed to reproduce a run bit for bit on CPU; it is saved as
`config.json` in the run directory. Field names are flat across the three sections so that
each one is also a command-line flag (`--d-model 7`, `--weight-decay 0.1`, ...).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from grokscope.errors import ConfigError
from grokscope.tasks.registry import get_task

ACT_FNS = ("relu", "gelu", "gelu_new", "silu")
NORMALIZATIONS = ("none", "LN")
# TransformerLens positional_embedding_type values grokscope trains: "standard" adds W_pos to
# the residual stream; "shortformer" adds it only to the attention's query and key inputs.
POSITIONAL_EMBEDDINGS = ("standard", "shortformer")
LOSSES = ("cross_entropy", "stablemax")
GRAD_FILTERS = ("none", "ema", "ma")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("cpu", "cuda")



@dataclass
class TaskConfig:
    """The dataset: `task` names a registered task (`grokscope.tasks`), which reads the fields
    it needs. `modular`: a op b mod p over all pairs; `addition`: n-digit decimal sums."""

    task: str = "modular"
    op: str = "add"
    p: int = 113
    train_frac: float = 0.3
    split_seed: int = 598
    # addition only: operand digits and the curriculum "lo-hi:steps,..." over digit counts
    n_digits: int = 10
    curriculum: str = "1-3:2000,1-6:5000,1-10:20000"
    n_ctx: int = 0  # addition: model context; 0 = 3 * n_digits + 5 (35, the 777 format)
    carry_boost: float = 0.0  # addition: fraction of training samples given a planted carry chain
    copy_boost: float = 0.0  # addition: fraction of training samples with one operand set to zero


@dataclass
class ModelConfig:
    """A HookedTransformer architecture. Vocabulary and context come from the task."""

    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: str = "relu"
    normalization: str = "none"
    tied_embeddings: bool = False
    biases: bool = True
    seed: int = 999
    init_range: float = 0.0  # std of the N(0, std) weight init; 0 = TransformerLens's 0.8/sqrt(d_model)
    # "shortformer": W_pos enters the queries and keys only, so the residual stream (values,
    # MLP, unembedding) carries the tokens alone: positions cost no residual dimensions
    positional_embedding: str = "standard"


@dataclass
class TrainConfig:
    """Optimisation. One epoch is one optimizer step (full batch, or one streamed batch)."""

    epochs: int = 25_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 10
    lr_schedule: str = "constant"
    min_lr: float = 0.0
    weight_decay_steps: str = ""  # "step:wd,...": weight decay from each step on (empty = weight_decay throughout)
    grad_clip: float = 0.0
    batch_size: int = 0  # 0 = full batch
    loss: str = "cross_entropy"
    # training targets (1 - e) on the label + e / vocab everywhere (0 = off; logged losses stay
    # plain): the loss then has its minimum at finite logits, so once the training set is fit
    # Adam is not pushed along the direction that only scales the logits up
    label_smoothing: float = 0.0
    grad_filter: str = "none"
    grokfast_alpha: float = 0.98
    grokfast_lambda: float = 2.0
    grokfast_window: int = 100
    orthograd: bool = False
    # weight of `losses.position_roughness` over the answer positions, `=` first (0 = off):
    # keeps them near a line, which pulls the `=` query next to its neighbours (and, at the
    # adder's measured weights, also bends the middle places: README, the 777 adder)
    pos_smooth: float = 0.0
    # weight of `losses.eq_line_distance` (0 = off): pulls only the `=` position onto the line
    # through the next two answer positions, which stay free (the rescue's edit, as a loss)
    eq_pull: float = 0.0
    # floor on the attention mass each sum digit's query puts on each of its two operand
    # digits (`losses.operand_floor_penalty`; 0 = off): a failed adder digit's query often
    # reads one operand only, and the softmax saturated there gives no gradient back
    operand_floor: float = 0.0
    # floor on the mass each sum digit's query (above the units) puts on the place below, the
    # carry in (`losses.carry_floor_penalty`; 0 = off); weighted by operand_floor_weight
    carry_floor: float = 0.0
    # the carry floor on the carry-out digit's query too (on the top place): a failed adder
    # whose other digits pass can leave that digit at binary chance
    carry_floor_final: bool = False
    operand_floor_weight: float = 0.01  # the floor penalties' weight in the objective
    operand_floor_batch: int = 64  # examples of each batch the penalty's attention is measured on
    # weight of `losses.head_overlap` (0 = off; modular tasks): how evenly each head at the `=`
    # query splits its attention between a and b. Grokked d = 7 a - b runs have each head on
    # one operand, failed ones split them; forcing it does not make a - b grok (0/10 at
    # weights 0.01 and 0.1: analyses/results/grok_d7_subdiv_overlap), so the split is a symptom
    head_overlap: float = 0.0
    log_every: int = 10
    n_checkpoints: int = 250
    n_log_checkpoints: int = 50
    device: str = "cpu"
    fast_path: bool = True


@dataclass
class RunConfig:
    """Task + model + training: one reproducible run."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None

    # --- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form, as written to config.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Inverse of `to_dict`; unknown keys raise ConfigError."""
        sections = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key == "preset":
                kwargs["preset"] = value
            elif key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"config section '{key}' must be an object, got {type(value).__name__}")
                known = {f.name for f in fields(sections[key])}
                unknown = set(value) - known
                if unknown:
                    raise ConfigError(f"unknown field(s) in config section '{key}': {sorted(unknown)}")
                kwargs[key] = sections[key](**value)
            else:
                raise ConfigError(f"unknown config section '{key}'")
        return cls(**kwargs)

    def to_json(self) -> str:
        """The config as sorted, indented JSON (the text of config.json)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        """Inverse of `to_json`; malformed JSON or unknown keys raise a one-line ConfigError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError("config JSON must be an object of sections")
        return cls.from_dict(data)

    # --- flat field access (CLI flags, sweeps) -----------------------------------------
    def replace(self, **overrides: Any) -> "RunConfig":
        """A copy with flat fields overridden, e.g. `cfg.replace(d_model=7, lr=2e-2)`.

        Changing `d_model` or `n_heads` without `d_head` sets d_head = d_model / n_heads,
        so heads follow the width (`validate` refuses a width that is not a whole number);
        an explicit `d_head` wins, and then n_heads * d_head may differ from d_model, as
        TransformerLens allows (e.g. 7 heads of width 2 on a 7-dimensional residual stream).
        """
        new = RunConfig.from_dict(self.to_dict())
        for name, value in overrides.items():
            section = section_of(name)
            setattr(getattr(new, section), name, value)
        m = new.model
        if "d_head" not in overrides and ("d_model" in overrides or "n_heads" in overrides) \
                and isinstance(m.n_heads, int) and isinstance(m.d_model, int) and m.n_heads >= 1:
            m.d_head = m.d_model // m.n_heads if m.d_model % m.n_heads == 0 else m.d_model / m.n_heads
        return new

    def validate(self) -> "RunConfig":
        """Raise ConfigError (one line) for any inconsistent setting; return self."""
        t, m, tr = self.task, self.model, self.train
        get_task(t.task).validate(t)  # the task's own settings (op, p, digits, ...)
        if not isinstance(m.d_head, int):  # e.g. derived by `replace` from a d_model that n_heads does not divide
            raise ConfigError(
                f"inconsistent head sizes: d_head {m.d_head:g} is not a whole number (d_model {m.d_model}, "
                f"n_heads {m.n_heads}; give d_head to choose the head width)"
            )
        if m.n_layers < 1 or m.d_model < 1 or m.n_heads < 1 or m.d_head < 1 or m.d_mlp < 1:
            raise ConfigError("n_layers, d_model, n_heads, d_head and d_mlp must all be >= 1")
        if m.act_fn not in ACT_FNS:
            raise ConfigError(f"unknown act_fn '{m.act_fn}' (choose from {', '.join(ACT_FNS)})")
        if m.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"unknown normalization '{m.normalization}' (choose from {', '.join(NORMALIZATIONS)})"
            )
        if m.positional_embedding not in POSITIONAL_EMBEDDINGS:
            raise ConfigError(f"unknown positional_embedding '{m.positional_embedding}' "
                              f"(choose from {', '.join(POSITIONAL_EMBEDDINGS)})")
        if m.init_range < 0:
            raise ConfigError(f"init_range must be >= 0 (0 = TransformerLens default), got {m.init_range}")
        if tr.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {tr.epochs}")
        if tr.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {tr.lr}")
        if tr.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {tr.weight_decay}")
        if tr.pos_smooth < 0:
            raise ConfigError(f"pos_smooth must be >= 0, got {tr.pos_smooth}")
        if tr.pos_smooth > 0 and self.task.task == "modular":
            raise ConfigError("pos_smooth needs a task with several answer positions (addition); modular tasks answer at one")
        if tr.eq_pull < 0:
            raise ConfigError(f"eq_pull must be >= 0, got {tr.eq_pull}")
        if tr.eq_pull > 0 and self.task.task == "modular":
            raise ConfigError("eq_pull needs a task with several answer positions (addition); modular tasks answer at one")
        if not 0 <= tr.operand_floor < 0.5:
            raise ConfigError(f"operand_floor must be in [0, 0.5) (a mass on each of two operands), got {tr.operand_floor}")
        if not 0 <= tr.carry_floor < 1:
            raise ConfigError(f"carry_floor must be in [0, 1), got {tr.carry_floor}")
        for name in ("operand_floor", "carry_floor"):
            if getattr(tr, name) > 0 and self.task.task != "addition":
                raise ConfigError(f"{name} needs the addition task (operand digits per answer place), got '{self.task.task}'")
            if getattr(tr, name) > 0 and self.model.n_layers != 1:
                raise ConfigError(f"{name} reads the attention of a 1-layer model, got n_layers={self.model.n_layers}")
        if tr.carry_floor_final and tr.carry_floor == 0:
            raise ConfigError("carry_floor_final needs carry_floor > 0 (it extends the carry floor to the carry-out digit)")
        if tr.head_overlap < 0:
            raise ConfigError(f"head_overlap must be >= 0, got {tr.head_overlap}")
        if tr.head_overlap > 0 and self.task.task != "modular":
            raise ConfigError(f"head_overlap needs a modular task (operands a, b at positions 0, 1), got '{self.task.task}'")
        if tr.head_overlap > 0 and self.model.n_layers != 1:
            raise ConfigError(f"head_overlap reads the attention of a 1-layer model, got n_layers={self.model.n_layers}")
        if tr.operand_floor_weight < 0:
            raise ConfigError(f"operand_floor_weight must be >= 0, got {tr.operand_floor_weight}")
        if tr.operand_floor_batch < 1:
            raise ConfigError(f"operand_floor_batch must be >= 1, got {tr.operand_floor_batch}")
        if not (0 <= tr.beta1 < 1 and 0 <= tr.beta2 < 1):
            raise ConfigError(f"betas must be in [0, 1), got ({tr.beta1}, {tr.beta2})")
        if not 0 <= tr.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {tr.label_smoothing}")
        if tr.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{tr.loss}' (choose from {', '.join(LOSSES)})")
        if tr.grad_filter not in GRAD_FILTERS:
            raise ConfigError(
                f"unknown grad_filter '{tr.grad_filter}' (choose from {', '.join(GRAD_FILTERS)})"
            )
        parse_weight_decay_steps(tr.weight_decay_steps)
        if tr.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"unknown lr_schedule '{tr.lr_schedule}' (choose from {', '.join(LR_SCHEDULES)})"
            )
        if tr.device not in DEVICES:
            raise ConfigError(f"unknown device '{tr.device}' (choose from {', '.join(DEVICES)})")
        if tr.log_every < 1 or tr.n_checkpoints < 1 or tr.n_log_checkpoints < 0:
            raise ConfigError("log_every and n_checkpoints must be >= 1, n_log_checkpoints >= 0")
        if tr.batch_size < 0 or tr.warmup_steps < 0 or tr.grokfast_window < 1:
            raise ConfigError("batch_size and warmup_steps must be >= 0, grokfast_window >= 1")
        return self


def parse_weight_decay_steps(spec: str) -> list[tuple[int, float]]:
    """Parse ``"step:wd,..."`` into [(step, wd), ...] with increasing steps; ConfigError (one
    line) if malformed. From optimizer step `step` (0-based) on, AdamW's weight decay is `wd`;
    before the first listed step it is `TrainConfig.weight_decay`. Empty: no changes."""
    out: list[tuple[int, float]] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            step_text, wd_text = part.split(":")
            step, wd = int(step_text), float(wd_text)
        except ValueError:
            raise ConfigError(f"bad weight_decay_steps entry '{part}' (expected 'step:wd', e.g. '1000:1.0')") from None
        if step < 0 or wd < 0 or (out and step <= out[-1][0]):
            raise ConfigError(f"bad weight_decay_steps entry '{part}': steps must increase from 0, weight decay >= 0")
        out.append((step, wd))
    return out


SECTIONS: dict[str, type] = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}


def flat_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Map every flat field name to (section, dataclass field)."""
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, klass in SECTIONS.items():
        for f in fields(klass):
            out[f.name] = (section, f)
    return out


def section_of(name: str) -> str:
    """Which section ('task', 'model', 'train') holds the flat field `name`."""
    table = flat_fields()
    if name not in table:
        raise ConfigError(f"unknown config field '{name}'")
    return table[name][0]


# --- presets --------------------------------------------------------------------------

def _nanda() -> RunConfig:
    # Nanda et al. 2023 mainline: p=113 addition, 30% train, 1 layer, no LayerNorm.
    return RunConfig(
        task=TaskConfig(task="modular", op="add", p=113, train_frac=0.3, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512,
                          act_fn="relu", normalization="none", seed=999),
        train=TrainConfig(epochs=25_000, lr=1e-3, weight_decay=1.0, beta1=0.9, beta2=0.98,
                          warmup_steps=10),
        preset="nanda",
    )


def _menon_d7() -> RunConfig:
    # The d_model=7 config a blog post proposed; measured here (seeds 0-2, 100k epochs) it does not
    # fit the training set: train accuracy <= 0.27, test <= 0.19 (analyses/results/menon_d7_100k).
    return RunConfig(
        task=TaskConfig(task="modular", op="add", p=97, train_frac=0.3, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=7, n_heads=1, d_head=7, d_mlp=14,
                          act_fn="relu", normalization="none", seed=999),
        train=TrainConfig(epochs=20_000, lr=2e-2, weight_decay=1.0, beta1=0.9, beta2=0.98,
                          warmup_steps=10),
        preset="menon-d7",
    )


def _modular_d7() -> RunConfig:
    # A d_model=7 model on add mod 97 that learns train and test together (~97% test by
    # 1,500 epochs): no memorisation phase, so no grok (see the d=7 issue).
    return RunConfig(
        task=TaskConfig(task="modular", op="add", p=97, train_frac=0.5, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=7, n_heads=1, d_head=7, d_mlp=28,
                          act_fn="relu", normalization="none", seed=999),
        train=TrainConfig(epochs=3_000, lr=2e-2, weight_decay=0.1, beta1=0.9, beta2=0.98,
                          warmup_steps=10),
        preset="modular-d7",
    )


def _grok_d7() -> RunConfig:
    # The first d_model=7 recipe that groks in most seeds (a + b mod 31; analyses/results/
    # d7_map_p31_heads*): with one head the MLP gets the average of the two embeddings and
    # misses the pairs where it is longest or shortest; seven heads of width 1 keep a and b
    # apart. 50% train delays generalisation (60% generalises without grokking); the cosine
    # schedule needs 20,000 epochs (at 10,000 the slow seeds are still climbing). Measured:
    # 4 of 5 screening seeds grok, 15 of 30 held-out ones (analyses/results/grok_d7_heldout,
    # grok_d7_wd_raise_heldout, grok_d7_levers_heldout); untuned for the other ops, held out:
    # mul 4/10, sub 2/10, div 0/10 (grok_d7_heldout, grok_d7_ops_heldout2);
    # seed 0 groks (checkpoints/grok-d7).
    return RunConfig(
        task=TaskConfig(task="modular", op="add", p=31, train_frac=0.5, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=7, n_heads=7, d_head=1, d_mlp=112, act_fn="relu",
                          normalization="none", tied_embeddings=True, seed=0),
        train=TrainConfig(epochs=20_000, lr=1e-2, weight_decay=0.3, beta1=0.9, beta2=0.98,
                          warmup_steps=10, lr_schedule="cosine", min_lr=0.0, log_every=50,
                          n_checkpoints=200, n_log_checkpoints=40),
        preset="grok-d7",
    )


def _adder_777() -> RunConfig:
    # yhavinga/gpt-acc-jax "pico-7d-ff14-lr02": 777 params, 99.69% on 10-digit addition.
    # init_range 0.5: with TransformerLens's default std 0.8/sqrt(7) = 0.30 the answer
    # digits' attention does not align (0% exact match); the JAX original inits at ~0.38.
    # seed 8: this recipe is a lottery at 777 parameters. With the batched training core
    # (batches hashed from seed and step) 1 of seeds 0-9 verifies at >= 99%: seed 8, which
    # trained alone on one torch thread (OMP_NUM_THREADS=1) verifies at 100.00% (10,017/10,017);
    # other thread counts and CPUs round differently and may end elsewhere. (The committed
    # checkpoints/adder-777 is seed 1 from the earlier core, which drew other batches.)
    return RunConfig(
        task=TaskConfig(task="addition", n_digits=10, curriculum="1-3:2000,1-6:5000,1-10:20000"),
        model=ModelConfig(n_layers=1, d_model=7, n_heads=1, d_head=7, d_mlp=14, act_fn="gelu",
                          normalization="LN", tied_embeddings=True, biases=False, seed=8,
                          init_range=0.5),
        train=TrainConfig(epochs=27_000, lr=0.02, weight_decay=0.01, beta1=0.9, beta2=0.999,
                          warmup_steps=1350, lr_schedule="cosine", min_lr=0.002, grad_clip=1.0,
                          batch_size=512, log_every=100),
        preset="adder-777",
    )


def _adder_777_floors() -> RunConfig:
    # The 777 architecture with issue 13's recipe (README, "Towards a reliable 777 adder"):
    # half of every batch gets a planted carry chain; one short 1-3-digit stage trains the
    # units digit first; eq_pull keeps the `=` query on its neighbours' line; the lr decays
    # to 0 (no relapse at the end); the attention floors keep every sum digit's query on both
    # of its operand digits and on the place below: without them a query's softmax saturates
    # on one operand or off the carry in, and that digit stays at chance or at ~0.7 for good.
    # The floors' penalty weighs 0.1, and the carry floor also covers the carry-out digit's
    # query (on the top place), the one digit with no operand places of its own.
    # Measured: analyses/results/adder_recipe_carry_floor (screen), adder_recipe_floors_heldout
    # (weight 0.01: 16/20), adder_recipe_floors_w01_heldout (0.1: 17/20),
    # adder_recipe_carry_final_heldout (this recipe: 19/20 on seeds 740-759;
    # adder_floors_preset_heldout2: 8/10 on 760-769; adder_floors_preset_heldout3: 10/10 on
    # 770-779; adder_floors_preset_heldout4: 8/10 on 780-789; 45/50 pooled, Wilson
    # 0.79-0.96). The default seed
    # is 740: trained alone (one torch thread, 2-core CPU) it verifies at 100.00%; adder-777's
    # seed 8 ends at 81.5% under this recipe (a run alone rounds differently from a stack).
    base = _adder_777()
    return RunConfig(
        task=dataclasses.replace(base.task, carry_boost=0.5, curriculum="1-3:2000,1-10:25000"),
        model=dataclasses.replace(base.model, seed=740),
        train=dataclasses.replace(base.train, min_lr=0.0, eq_pull=0.001, operand_floor=0.1, carry_floor=0.05,
                                  operand_floor_weight=0.1, carry_floor_final=True),
        preset="adder-777-floors",
    )


def _mini_grok() -> RunConfig:
    # A small model that memorises by epoch ~240 and groks (test acc >= 99%) around 2,100:
    # small enough (16k parameters) to commit 150 checkpoints as the reference run.
    return RunConfig(
        task=TaskConfig(task="modular", op="add", p=59, train_frac=0.5, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=128,
                          act_fn="relu", normalization="none", seed=999),
        train=TrainConfig(epochs=3_000, lr=2e-3, weight_decay=1.0, beta1=0.9, beta2=0.98,
                          warmup_steps=10, n_checkpoints=150, n_log_checkpoints=30, log_every=20),
        preset="mini-grok",
    )


PRESET_DESCRIPTIONS = {
    "nanda": "Nanda et al. (2023) mainline: a + b mod 113, 30% train, d_model 128; groks near epoch 8,600",
    "menon-d7": "a + b mod 97 at d_model 7 as a blog post proposed; train accuracy <= 0.27 through 100k epochs in 3 seeds (kept to show it)",
    "modular-d7": "a + b mod 97 at d_model 7, 50% train: learns train and test together (~97% test), no grok",
    "grok-d7": "a + b mod 31 at d_model 7 (7 heads of width 1, d_mlp 112, tied, 50% train): groks in 4 of 5 screening seeds, 15 of 30 held out (--op mul 4/10, sub 2/10, div 0/10)",
    "mini-grok": "a + b mod 59, d_model 32: memorises by ~250 epochs, groks near 2,100 (the committed reference run)",
    "adder-777": "the 777-parameter 10-digit adder (1 layer, d_model 7, tied, no biases); a seed lottery, seed 8 won",
    "adder-777-floors": "the same 777 parameters with issue 13's recipe: carry chains, a short curriculum, eq_pull, lr to 0, attention floors on the operands and the carry in; 45 of 50 held-out seeds verify (19/20, 8/10, 10/10, 8/10)",
}

PRESETS = {"nanda": _nanda, "menon-d7": _menon_d7, "modular-d7": _modular_d7, "grok-d7": _grok_d7,
           "mini-grok": _mini_grok, "adder-777": _adder_777, "adder-777-floors": _adder_777_floors}


def preset(name: str) -> RunConfig:
    """A fresh copy of a named preset's RunConfig."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (choose from {', '.join(sorted(PRESETS))})")
    return PRESETS[name]()


FIELD_HELP: dict[str, str] = {
    "task": "modular | addition (or a registered task)",
    "op": "modular op: add, sub, mul, div, x2+y2, x3+xy, x2+xy+y2, x2+y",
    "p": "modulus (prime for div)",
    "train_frac": "fraction of pairs used for training, in (0, 1)",
    "split_seed": "seed of the train/test split",
    "n_digits": "addition: operand digits",
    "curriculum": "addition: 'lo-hi:steps,...' digit-count schedule",
    "n_ctx": "addition: model context, >= 3*n_digits+3 (0 = 3*n_digits+5)",
    "carry_boost": "addition: fraction of training samples given a planted carry chain, in [0, 1)",
    "copy_boost": "addition: fraction of training samples whose a or b is zero (x + 0 = x), in [0, 1)",
    "n_layers": "transformer blocks",
    "d_model": "residual stream width",
    "n_heads": "attention heads (d_head follows d_model / n_heads unless given)",
    "d_head": "width of each head (n_heads * d_head may differ from d_model)",
    "d_mlp": "MLP hidden width",
    "act_fn": f"MLP activation: {', '.join(ACT_FNS)}",
    "normalization": "none | LN",
    "positional_embedding": "standard (W_pos added to the residual stream) | shortformer (to queries and keys only)",
    "tied_embeddings": "unembedding is the embedding transposed (one parameter)",
    "biases": "biases in attention, MLP and unembedding",
    "seed": "model initialisation seed",
    "init_range": "std of the normal weight init (0 = TransformerLens default 0.8/sqrt(d_model))",
    "epochs": "optimizer steps",
    "lr": "peak learning rate",
    "weight_decay": "AdamW weight decay",
    "beta1": "AdamW beta1",
    "beta2": "AdamW beta2",
    "warmup_steps": "linear warm-up steps",
    "lr_schedule": "constant | cosine (after warm-up)",
    "min_lr": "final learning rate of the cosine schedule",
    "weight_decay_steps": "'step:wd,...': weight decay from each step on (e.g. raised after memorisation)",
    "grad_clip": "max gradient norm (0 = off)",
    "batch_size": "streamed batch size (0 = full batch)",
    "loss": "cross_entropy | stablemax",
    "label_smoothing": "training target weight spread evenly over the vocabulary, in [0, 1) (0 = off)",
    "grad_filter": "Grokfast filter: none | ema | ma",
    "grokfast_alpha": "Grokfast EMA decay",
    "grokfast_lambda": "Grokfast amplification",
    "grokfast_window": "Grokfast MA window",
    "orthograd": "⊥Grad: remove the gradient component along the weights",
    "pos_smooth": "penalty weight on the learned positions' squared second differences over the answer positions (0 = off)",
    "eq_pull": "penalty weight on the `=` position's distance from 2 P[=+1] - P[=+2], its neighbours' line (0 = off)",
    "operand_floor": "floor on each sum digit's attention mass on each of its two operand digits; below it a log penalty (0 = off)",
    "carry_floor": "floor on each sum digit's (above the units) attention mass on the place below; below it a log penalty (0 = off)",
    "carry_floor_final": "apply the carry floor to the carry-out digit's query too (on the top place)",
    "operand_floor_weight": "weight of the operand- and carry-floor penalties in the objective",
    "operand_floor_batch": "examples per batch the floor penalties measure attention on",
    "head_overlap": "penalty weight on each head's 4 m_a m_b, its attention from `=` on a times on b (0 = off; modular)",
    "log_every": "log metrics every N steps (and at every checkpoint)",
    "n_checkpoints": "checkpoint budget (evenly spaced + log-spaced early)",
    "n_log_checkpoints": "how many of them are log-spaced early",
    "device": "cpu | cuda",
    "fast_path": "use the exact 1-layer answer-position fast path when it applies",
}
