from pathlib import Path

import pytest

from grokscope.config import RunConfig, preset
from grokscope.errors import ConfigError
from grokscope.tasks.modular.config import is_prime


def test_nanda_preset_matches_paper():
    cfg = preset("nanda")
    assert (cfg.task.p, cfg.task.op, cfg.task.train_frac) == (113, "add", 0.3)
    m = cfg.model
    assert (m.n_layers, m.d_model, m.n_heads, m.d_head, m.d_mlp, m.act_fn, m.normalization) == (
        1, 128, 4, 32, 512, "relu", "none")
    t = cfg.train
    assert (t.lr, t.weight_decay, t.beta1, t.beta2, t.batch_size) == (1e-3, 1.0, 0.9, 0.98, 0)


def test_json_round_trip():
    cfg = preset("menon-d7").replace(lr=0.5, op="div", orthograd=True)
    assert RunConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"op": "div", "p": 96}, "prime"),
        ({"train_frac": 0.0}, "train_frac"),
        ({"train_frac": 1.0}, "train_frac"),
        ({"n_heads": 3}, "inconsistent head sizes"),  # 128 / 3 heads
        ({"op": "pow"}, "unknown op"),
        ({"act_fn": "tanh"}, "unknown act_fn"),
        ({"loss": "mse"}, "unknown loss"),
        ({"positional_embedding": "rotary"}, "unknown positional_embedding"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_settings_raise_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        preset("nanda").replace(**overrides).validate()
    assert "\n" not in str(info.value)


def test_unknown_field_and_preset():
    with pytest.raises(ConfigError, match="unknown config field 'd_modle'"):
        preset("nanda").replace(d_modle=3)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")
    with pytest.raises(ConfigError, match="unknown field"):
        RunConfig.from_dict({"model": {"d_modle": 3}})


def test_is_prime():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_adder_floors_preset_is_the_recipe_its_held_out_sweep_measured():
    """`adder-777-floors` equals `adder-777` with the overrides of the spec whose table the
    README reports (seed and preset name aside), and keeps the 777 parameters."""
    from grokscope import batched
    from grokscope.sweep import load_spec
    from grokscope.tasks import make_task

    spec = load_spec(Path(__file__).parents[1] / "analyses" / "adder_recipe_carry_final_heldout.toml")
    measured = preset(spec.preset).replace(**spec.overrides, seed=8)
    ours = preset("adder-777-floors")
    assert ours.replace(seed=8).to_dict() | {"preset": None} == measured.to_dict() | {"preset": None}
    ours.validate()
    arch = batched.Architecture.for_task(ours.model, make_task(ours.task))
    assert batched.n_params(arch) == 777
