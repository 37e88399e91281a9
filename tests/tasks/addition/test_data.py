"""The addition task: 777 format, curriculum, streamed batches, fast path, eval, training."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import grokscope
from grokscope.tasks.addition.format import (
    EOS,
    EQ,
    PLUS,
    carry_chain_length,
    check_addition_config,
    decode_answer,
    describe_addition,
    encode,
    parse_curriculum,
)
from grokscope.config import TaskConfig, preset
from grokscope.errors import ConfigError
from grokscope.constants import METRICS_FILENAME
from grokscope.fastpath import answer_position_forward
from grokscope.model import build_model_for_task, param_count
from grokscope.tasks import make_task
from grokscope.tasks.addition import (
    AdditionTask,
    add_digits,
    build_sequences,
    int_to_digits,
    longest_carry_chain,
    sample_operand_digits,
    sequences_from_ints,
)
from grokscope.tasks.addition.data import model_inputs_from_digits
from tests.adder_stubs import OracleStub


def small_config(**over):
    """The adder-777 architecture on 3-digit addition, a few dozen steps of batch 64."""
    base = dict(n_digits=3, curriculum="1-2:20,1-3:20", epochs=40, batch_size=64, warmup_steps=4,
                log_every=5, n_checkpoints=10, n_log_checkpoints=0)
    base.update(over)
    return preset("adder-777").replace(**base)


# --- format -------------------------------------------------------------------------------

def test_encode_known_example():
    seq = encode(123, 456, 10)
    prompt = [0] * 7 + [1, 2, 3] + [PLUS] + [0] * 7 + [4, 5, 6] + [EQ]
    assert seq == prompt + [9, 7, 5] + [0] * 8 + [EOS]  # 579 reversed, 11 digits
    assert len(seq) == 34 and decode_answer(seq[22:], 10) == 579
    top = 10**10 - 1
    assert decode_answer(encode(top, top, 10)[22:], 10) == 2 * top
    assert decode_answer([1, 2, EOS, 0], 3) is None  # a non-digit inside the n+1 digits


def test_tensor_sequences_match_python_encoding():
    pairs = [(0, 0), (123, 456), (9999999999, 1), (9999999999, 9999999999), (5555555555, 4444444445),
             (1234567890, 9876543210), (7, 80000)]
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    seq = sequences_from_ints(a, b, 10)
    assert seq.tolist() == [encode(x, y, 10) for x, y in pairs]
    with pytest.raises(ConfigError):
        sequences_from_ints(torch.tensor([10**10]), torch.tensor([0]), 10)


@pytest.mark.parametrize("a,b,chain", [(0, 0, 0), (5, 5, 1), (95, 5, 2), (9999999999, 1, 10), (909, 101, 1),
                                       (555, 445, 3), (123, 456, 0), (9999999999, 9999999999, 10)])
def test_carry_chain_known_answers(a, b, chain):
    assert carry_chain_length(a, b) == chain
    _, carries = add_digits(int_to_digits(torch.tensor([a]), 10), int_to_digits(torch.tensor([b]), 10))
    assert longest_carry_chain(carries).item() == chain


def test_tensor_carry_chain_matches_python_on_random_pairs():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 10**6, (500,), generator=g)
    b = 999_999 - a + torch.randint(-3, 3, (500,), generator=g).clamp(min=0)  # many long chains
    b = b.clamp(0, 999_999)
    _, carries = add_digits(int_to_digits(a, 6), int_to_digits(b, 6))
    expected = [carry_chain_length(int(x), int(y)) for x, y in zip(a, b)]
    assert longest_carry_chain(carries).tolist() == expected
    assert max(expected) >= 5


# --- config and curriculum ----------------------------------------------------------------

def test_curriculum_parsing_and_stages():
    assert parse_curriculum("1-3:2000,1-6:5000,1-10:20000", 10) == [(1, 3, 2000), (1, 6, 5000), (1, 10, 20000)]
    task = AdditionTask(TaskConfig(task="addition"))
    assert [task.stage_at(s) for s in (0, 1999, 2000, 6999, 7000, 26999, 10**6)] == [
        (1, 3), (1, 3), (1, 6), (1, 6), (1, 10), (1, 10), (1, 10)]


@pytest.mark.parametrize("over,match", [
    (dict(n_digits=0), "n_digits must be >= 1"),
    (dict(n_digits=19, curriculum="1-19:5"), "n_digits must be <= 18"),
    (dict(n_ctx=32), "context too short"),
    (dict(n_digits=12, n_ctx=35), "context too short"),  # 12 digits need 3*12+3 = 39
    (dict(curriculum="1-11:5"), "bad curriculum stage"),
    (dict(curriculum="three:5"), "bad curriculum stage"),
    (dict(carry_boost=1.0), "carry_boost must be in"),
    (dict(carry_boost=-0.1), "carry_boost must be in"),
    (dict(copy_boost=1.0), "copy_boost must be in"),
])
def test_bad_addition_config_is_one_line_error(over, match):
    with pytest.raises(ConfigError, match=match) as e:
        preset("adder-777").replace(**over).validate()
    assert "\n" not in str(e.value)


def test_preset_has_777_parameters_and_context_35():
    cfg = preset("adder-777").validate()
    task = make_task(cfg.task)
    assert (task.n_ctx, task.d_vocab, task.input_len) == (35, 14, 33)
    model = build_model_for_task(cfg.model, task)
    assert param_count(model) == 777
    assert cfg.train.warmup_steps == 1350 == 0.05 * cfg.train.epochs
    check_addition_config(10, 33, cfg.task.curriculum)  # 33 is enough: positions 0..32


# --- batches --------------------------------------------------------------------------------

def test_train_batches_follow_curriculum_and_are_correct_sums():
    task = AdditionTask(TaskConfig(task="addition"))
    task.batch_size = 256
    seeds = torch.tensor([0])
    tokens, labels = (x[0] for x in task.train_data(0, seeds, "cpu"))
    assert tokens.shape == (256, 33) and labels.shape == (256, 12)
    a = tokens[:, :10] @ (10 ** torch.arange(9, -1, -1))
    b = tokens[:, 11:21] @ (10 ** torch.arange(9, -1, -1))
    assert int(a.max()) < 1000 and int(b.max()) < 1000  # stage 1: 1-3 digits
    for r in range(256):
        assert decode_answer(labels[r].tolist(), 10) == int(a[r] + b[r])
    assert (labels[:, -1] == EOS).all()
    # teacher forcing: the model input holds the answer digits shifted by one
    assert torch.equal(tokens[:, 22:], labels[:, :-1]) and (tokens[:, 21] == EQ).all()
    # stage 3: all digit counts 1..10 occur
    tokens = task.train_data(10_000, seeds, "cpu")[0][0]
    a = tokens[:, :10]
    n_digits = 10 - (a != 0).int().argmax(1)
    assert set(n_digits.tolist()) >= set(range(3, 11))


def test_batches_are_a_function_of_seed_and_step_alone():
    task = AdditionTask(TaskConfig(task="addition"))
    x1 = task.train_data(5, torch.tensor([7]), "cpu")[0]
    assert torch.equal(x1, task.train_data(5, torch.tensor([7]), "cpu")[0])
    assert not torch.equal(x1, task.train_data(5, torch.tensor([8]), "cpu")[0])
    assert not torch.equal(x1, task.train_data(6, torch.tensor([7]), "cpu")[0])
    # Model k's stream does not depend on the other models trained beside it (or on K).
    many = task.train_data(5, torch.tensor([3, 7, 9, 11]), "cpu")[0]
    assert many.shape == (4, 512, 33) and torch.equal(many[1], x1[0])
    assert not torch.equal(many[0], many[1])


def test_carry_boost_plants_chains_in_that_fraction_and_leaves_the_rest_alone():
    plain = AdditionTask(TaskConfig(task="addition"))
    boosted = AdditionTask(TaskConfig(task="addition", carry_boost=0.4))
    plain.batch_size = boosted.batch_size = 4_000
    seeds = torch.tensor([3, 7])
    for step, max_digits in ((0, 3), (10_000, 10)):  # stage 1 (1-3 digits) and stage 3 (1-10)
        t0, l0 = plain.train_data(step, seeds, "cpu")
        t1, l1 = boosted.train_data(step, seeds, "cpu")
        changed = (t0 != t1).any(-1)
        assert 0.33 < float(changed.double().mean()) < 0.43  # planted samples (a few by chance equal)
        assert torch.equal(t0[~changed], t1[~changed])  # the others are the plain draws, bit for bit
        for k in range(2):
            a = t1[k, :, :10] @ (10 ** torch.arange(9, -1, -1))
            b = t1[k, :, 11:21] @ (10 ** torch.arange(9, -1, -1))
            assert int(a.max()) < 10**max_digits and int(b.max()) < 10**max_digits  # chains stay in the stage's digits
            for r in range(0, 4_000, 97):
                assert decode_answer(l1[k, r].tolist(), 10) == int(a[r] + b[r])
            _, carries = add_digits(t1[k, :, :10], t1[k, :, 11:21])
            chain = longest_carry_chain(carries)
            assert bool((chain[changed[k]] >= 1).all())  # every planted sample carries
        _, c0 = add_digits(t0[0, :, :10], t0[0, :, 11:21])
        assert float(chain[changed[1]].double().mean()) > float(longest_carry_chain(c0).double().mean()) + 0.5
    # independent of K, like the plain stream
    one = boosted.train_data(10_000, torch.tensor([7]), "cpu")[0]
    assert torch.equal(one[0], t1[1])


def test_copy_boost_zeroes_one_operand_in_that_fraction_and_leaves_the_rest_alone():
    plain = AdditionTask(TaskConfig(task="addition", carry_boost=0.5))
    copied = AdditionTask(TaskConfig(task="addition", carry_boost=0.5, copy_boost=0.3))
    plain.batch_size = copied.batch_size = 4_000
    seeds = torch.tensor([3, 7])
    place = 10 ** torch.arange(9, -1, -1)
    t0, _ = plain.train_data(10_000, seeds, "cpu")
    t1, l1 = copied.train_data(10_000, seeds, "cpu")
    changed = (t0 != t1).any(-1)
    assert 0.27 < float(changed.double().mean()) < 0.31  # zeroed samples (a zero operand by chance stays)
    assert torch.equal(t0[~changed], t1[~changed])  # the others are the carry-boosted draws, bit for bit
    for k in range(2):
        a, b = t1[k, :, :10] @ place, t1[k, :, 11:21] @ place
        a0, b0 = t0[k, :, :10] @ place, t0[k, :, 11:21] @ place
        ch = changed[k]
        zero_a, zero_b = ch & (a == 0) & (b != 0), ch & (b == 0) & (a != 0)  # (both zero: a drawn 0 by chance)
        assert bool(((a == 0) | (b == 0))[ch].all())  # every changed sample has a zero operand ...
        assert torch.equal(b[zero_a], b0[zero_a]) and torch.equal(a[zero_b], a0[zero_b])  # ... and keeps the other
        assert 0.4 < float(zero_a[ch].double().mean()) < 0.6  # a and b about equally often
        for r in range(0, 4_000, 97):
            assert decode_answer(l1[k, r].tolist(), 10) == int(a[r] + b[r])
    one = copied.train_data(10_000, torch.tensor([7]), "cpu")[0]  # independent of K
    assert torch.equal(one[0], t1[1])
    assert "one operand zero in 30%" in describe_addition(copied.cfg)


def test_vectorised_sequences_equal_the_carry_loop():
    g = torch.Generator().manual_seed(0)
    a, b = sample_operand_digits(g, 300, 1, 10, 10)
    tokens, labels = model_inputs_from_digits(a, b)
    ref_tokens, ref_labels = AdditionTask(TaskConfig(task="addition")).split_sequences(build_sequences(a, b))
    assert torch.equal(tokens, ref_tokens) and torch.equal(labels, ref_labels)


def test_eval_sets_are_seeded_and_round_trip_through_the_split():
    cfg = TaskConfig(task="addition")
    t1 = AdditionTask(cfg)
    assert t1.test_a.shape == (2000,) and int(t1.test_a.max()) < 10**10
    assert int(t1.test_a.min()) >= 0 and int(t1.test_a.max()) > 10**9  # full-length operands
    t2 = make_task(cfg, t1.split_tensors())
    assert torch.equal(t2.test_tokens, t1.test_tokens) and torch.equal(t2.train_tokens, t1.train_tokens)
    t3 = AdditionTask(TaskConfig(task="addition", split_seed=1))
    assert not torch.equal(t3.test_a, t1.test_a)


# --- model side -----------------------------------------------------------------------------

@pytest.mark.parametrize("over", [{}, {"act_fn": "gelu_new", "n_heads": 7, "d_head": 1},
                                  {"normalization": "none", "biases": True, "tied_embeddings": False}])
def test_fast_path_equals_hooked_forward(over):
    cfg = preset("adder-777").replace(**over)
    task = make_task(cfg.task)
    model = build_model_for_task(cfg.model, task)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    tokens = task.train_data(20_000, torch.tensor([1]), "cpu")[0][0, :64]
    with torch.no_grad():
        ref = model(tokens)[:, task.eq_pos :]
        fast = answer_position_forward(model, tokens, task.eq_pos)[0]
    assert fast.shape == (64, 12, 14)
    assert (fast - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())  # float32 round-off


def test_evaluate_scores_an_oracle_and_a_known_fraction_of_errors():
    task = AdditionTask(TaskConfig(task="addition"))
    perfect = task.evaluate(OracleStub(10), fast=False)
    assert perfect["test_acc"] == 1.0 and perfect["train_acc"] == 1.0 and perfect["test_loss"] < 1e-3
    # wrong on digit 2 whenever a's units digit is 7: known fraction wrong, only digit 2 hurt
    stub = OracleStub(10, corrupt=lambda a, b, i, t: (t + 1) % 10 if i == 2 and a % 10 == 7 else t)
    scores = task.evaluate(stub, fast=False)
    frac = (task.test_a % 10 != 7).double().mean().item()
    assert scores["test_acc"] == pytest.approx(frac)
    assert scores["test_digit2_acc"] == pytest.approx(frac)
    assert scores["test_digit1_acc"] == 1.0 and scores["test_eos_acc"] == 1.0
    assert {"train_loss", "test_loss", "train_acc", "test_acc", "test_token_acc"} <= set(scores)


# --- training -------------------------------------------------------------------------------

def _final_weights(run):
    return load_file(run.checkpoint_path(run.steps[-1]))


def test_streamed_training_is_deterministic(tmp_path):
    a = grokscope.train(small_config(), tmp_path / "a", progress=False)
    b = grokscope.train(small_config(), tmp_path / "b", progress=False)
    assert (a.path / METRICS_FILENAME).read_text() == (b.path / METRICS_FILENAME).read_text()
    wa, wb = _final_weights(a), _final_weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.steps == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert torch.equal(a.task.test_a, make_task(small_config().task).test_a)  # split saved, reloaded
    assert a.metrics["train_loss"].iloc[-1] < a.metrics["train_loss"].iloc[0]


class _Crash(Exception):
    pass


def test_crash_and_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    ref = grokscope.train(small_config(), tmp_path / "ref", progress=False)

    original = AdditionTask.train_data

    def crashing(self, step, seeds, device):
        if step == 23:  # the last checkpoint before the crash is step 20
            raise _Crash
        return original(self, step, seeds, device)

    monkeypatch.setattr(AdditionTask, "train_data", crashing)
    with pytest.raises(_Crash):
        grokscope.train(small_config(), tmp_path / "victim", progress=False)
    drawn = []

    def counting(self, step, seeds, device):
        drawn.append(step)
        return original(self, step, seeds, device)

    monkeypatch.setattr(AdditionTask, "train_data", counting)
    resumed = grokscope.train(None, tmp_path / "victim", resume=True, progress=False)
    assert drawn[0] == 20 and drawn == list(range(20, small_config().train.epochs))  # resumed at step 20

    assert (resumed.path / METRICS_FILENAME).read_text() == (ref.path / METRICS_FILENAME).read_text()
    wr, wv = _final_weights(ref), _final_weights(resumed)
    assert all(torch.equal(wr[k], wv[k]) for k in wr)


def test_task_repr_says_what_it_is():
    task = make_task(TaskConfig(task="addition", n_digits=3, curriculum="1-3:5"), batch_size=32)
    assert repr(task) == "AdditionTask(3-digit addition, context 14, curriculum 1-3:5, batch 32, 2000 test pairs)"
