import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grokscope.config import TaskConfig
from grokscope.errors import ConfigError
from grokscope.tasks import make_task
from grokscope.tasks.modular import ModularTask, apply_op, modular_inverse


def test_enumeration_and_tokens():
    task = make_task(TaskConfig(op="add", p=7, train_frac=0.3))
    assert len(task) == 49
    assert task.tokens[3 * 7 + 5].tolist() == [3, 5, 7]  # index a*p+b, '=' is token p
    assert task.labels[3 * 7 + 5].item() == (3 + 5) % 7
    assert (task.d_vocab, task.d_vocab_out, task.n_ctx) == (8, 7, 3)


@pytest.mark.parametrize("op, fn", [
    ("add", lambda a, b, p: (a + b) % p),
    ("sub", lambda a, b, p: (a - b) % p),
    ("mul", lambda a, b, p: (a * b) % p),
    ("x2+y2", lambda a, b, p: (a * a + b * b) % p),
    ("x3+xy", lambda a, b, p: (a ** 3 + a * b) % p),
])
def test_ops_known_answers(op, fn):
    task = make_task(TaskConfig(op=op, p=11))
    for a, b, y in zip(task.a.tolist(), task.b.tolist(), task.labels.tolist()):
        assert y == fn(a, b, 11)


def test_division_is_a_true_modular_inverse():
    p = 13
    task = make_task(TaskConfig(op="div", p=p))
    assert len(task) == p * (p - 1)  # b = 0 has no inverse
    assert not (task.b == 0).any()
    # (a / b) * b == a mod p: not floor division, not multiplication
    assert torch.equal((task.labels * task.b) % p, task.a)
    assert task.labels[(task.a == 6) & (task.b == 4)].item() == 8  # 4 * 8 = 32 = 6 mod 13


@given(st.sampled_from([5, 7, 11, 97, 113]), st.integers(1, 10**6))
@settings(max_examples=50, deadline=None)
def test_modular_inverse_property(p, b):
    b = b % p or 1
    assert (b * modular_inverse(b, p)) % p == 1


def test_div_needs_prime_and_nonzero():
    with pytest.raises(ConfigError, match="prime"):
        apply_op("div", torch.tensor([1]), torch.tensor([2]), 12)
    with pytest.raises(ConfigError, match="b = 0"):
        apply_op("div", torch.tensor([1]), torch.tensor([0]), 7)


def test_split_is_seeded_disjoint_and_complete():
    cfg = TaskConfig(p=31, train_frac=0.3, split_seed=5)
    t1, t2 = make_task(cfg), make_task(cfg)
    assert torch.equal(t1.train_idx, t2.train_idx)
    assert len(t1.train_idx) == round(0.3 * 31 * 31)
    both = torch.cat([t1.train_idx, t1.test_idx]).sort().values
    assert torch.equal(both, torch.arange(31 * 31))
    other = make_task(TaskConfig(p=31, train_frac=0.3, split_seed=6))
    assert not torch.equal(other.train_idx, t1.train_idx)


def test_saved_split_is_used():
    cfg = TaskConfig(p=7)
    split = {"train_idx": torch.tensor([0, 1, 2]), "test_idx": torch.arange(3, 49)}
    task = make_task(cfg, split)
    assert task.train_idx.tolist() == [0, 1, 2]


@pytest.mark.parametrize("op", ["add", "mul", "x2+y2"])
def test_mirror_test_split_of_a_commutative_op(op):
    task = ModularTask(TaskConfig(op=op, p=11, train_frac=0.5, split_seed=4))
    seen, unseen = task.mirror_test_split()
    train = {(int(task.a[i]), int(task.b[i])) for i in task.train_idx}
    assert all((int(task.b[i]), int(task.a[i])) in train for i in seen)
    assert not any((int(task.b[i]), int(task.a[i])) in train for i in unseen)
    assert bool((task.a[unseen] != task.b[unseen]).all())
    diagonal = int((task.a[task.test_idx] == task.b[task.test_idx]).sum())
    assert len(seen) + len(unseen) + diagonal == len(task.test_idx)  # every test pair, once
    assert set(seen.tolist()).isdisjoint(unseen.tolist())


@pytest.mark.parametrize("op", ["sub", "div", "x2+y"])
def test_mirror_test_split_is_none_for_ops_that_do_not_commute(op):
    assert ModularTask(TaskConfig(op=op, p=11, train_frac=0.5, split_seed=4)).mirror_test_split() is None


def planted_logits(task: ModularTask, right: torch.Tensor) -> torch.Tensor:
    """Logits (1, n, 1, p) that answer the pairs in the boolean mask `right` correctly and
    every other pair with label + 1."""
    answer = torch.where(right, task.labels, (task.labels + 1) % task.p)
    return torch.nn.functional.one_hot(answer, task.p).double()[None, :, None] * 10


def test_eval_metrics_logs_mirror_unseen_accuracy_of_a_symmetric_memoriser():
    # a model that knows the training pairs and their mirrors, nothing else: about half the
    # test pairs right, none of those whose mirror is also a test pair
    task = ModularTask(TaskConfig(op="add", p=13, train_frac=0.5, split_seed=2))
    in_train = torch.zeros(len(task), dtype=torch.bool)
    in_train[task.train_idx] = True
    mirror_in_train = in_train.view(task.p, task.p).T.reshape(-1)  # add keeps every pair
    out = task.eval_metrics({"all": planted_logits(task, in_train | mirror_in_train)})
    assert out["train_acc"].item() == 1.0
    assert out["test_acc_mirror_unseen"].item() == 0.0
    assert 0.3 < out["test_acc"].item() < 0.7
    everything = task.eval_metrics({"all": planted_logits(task, torch.ones(len(task), dtype=torch.bool))})
    assert everything["test_acc_mirror_unseen"].item() == 1.0


def test_eval_metrics_has_no_mirror_column_for_an_op_that_does_not_commute():
    task = ModularTask(TaskConfig(op="sub", p=13, train_frac=0.5, split_seed=2))
    out = task.eval_metrics({"all": planted_logits(task, torch.ones(len(task), dtype=torch.bool))})
    assert "test_acc_mirror_unseen" not in out and out["test_acc"].item() == 1.0


def test_streamed_batches_are_training_pairs_seeded_by_model_and_step():
    task = make_task(TaskConfig(p=23, train_frac=0.5, split_seed=3), batch_size=40)
    seeds = torch.tensor([5, 6])
    tokens, labels = task.train_data(7, seeds, "cpu")
    assert tokens.shape == (2, 40, 3) and labels.shape == (2, 40, 1)
    train_rows = {tuple(r) for r in task.tokens[task.train_idx].tolist()}
    assert all(tuple(r) in train_rows for r in tokens.flatten(0, 1).tolist())  # never a test pair
    assert torch.equal(labels[..., 0], apply_op("add", tokens[..., 0], tokens[..., 1], 23))
    again, _ = task.train_data(7, torch.tensor([6]), "cpu")
    assert torch.equal(again[0], tokens[1])  # a model's batch does not depend on the others
    assert not torch.equal(task.train_data(8, seeds, "cpu")[0], tokens)  # a new batch each step
    assert not torch.equal(tokens[0], tokens[1])  # and each seed its own
    # over many steps every training pair is drawn, about equally often
    seen = torch.cat([task.train_data(s, seeds[:1], "cpu")[0][0] for s in range(200)])
    counts = torch.bincount(seen[:, 0] * 23 + seen[:, 1], minlength=23 * 23)[task.train_idx].double()
    assert bool((counts > 0).all()) and float(counts.std() / counts.mean()) < 0.3
    full, _ = make_task(TaskConfig(p=23, train_frac=0.5, split_seed=3)).train_data(7, seeds, "cpu")
    assert full.shape == (len(task.train_idx), 3)  # batch_size 0: the full batch, shared


def test_streamed_batch_must_be_smaller_than_the_training_set():
    with pytest.raises(ConfigError, match="not below the 264 training pairs"):
        make_task(TaskConfig(p=23, train_frac=0.5), batch_size=264)
