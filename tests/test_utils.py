"""Shared pieces: parameter validation, Adam, atomic files, spike data packing."""
import json
import math
import os

import numpy as np
import pytest

from eventprop.config import checks
from eventprop import optim
from eventprop import storage
from eventprop.data.spikes import SpikeData, times_to_steps

DEFAULTS = {"ETA": 1e-3, "N_BATCH": 32, "LOSS_TYPE": "sum", "PDROP": 0.0}
RULES = {"ETA": checks.positive, "N_BATCH": checks.integer_at_least(1),
         "LOSS_TYPE": checks.one_of("sum", "max"), "PDROP": checks.probability}


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(KeyError) as e:
        checks.check_params({"N_BTACH": 4}, DEFAULTS, RULES)
    assert "N_BTACH" in str(e.value) and "N_BATCH" in str(e.value)


@pytest.mark.parametrize("key,value", [("ETA", -1.0), ("ETA", float("nan")), ("N_BATCH", 0),
                                       ("N_BATCH", 2.5), ("LOSS_TYPE", "summ"), ("PDROP", 1.0),
                                       ("PDROP", True)])
def test_invalid_value_names_key(key, value):
    with pytest.raises(ValueError, match=key):
        checks.check_params({key: value}, DEFAULTS, RULES)


def test_defaults_filled_and_input_untouched():
    p = {"ETA": 0.5}
    full = checks.check_params(p, DEFAULTS, RULES)
    assert full["ETA"] == 0.5 and full["N_BATCH"] == 32 and p == {"ETA": 0.5}


def test_adam_matches_closed_form():
    """First step moves by eta sign(g) (bias correction); later steps follow the recursion."""
    adam = optim.Adam(0.9, 0.999, 1e-8)
    params = {"w": np.array([1.0, -2.0, 0.5])}
    g = np.array([0.3, -0.1, 0.0])
    adam.step(params, {"w": g}, 0.01, ["w"])
    assert np.allclose(params["w"], [1.0 - 0.01, -2.0 + 0.01, 0.5], atol=1e-7)
    m, v = 0.1 * g, 0.001 * g * g
    g2 = np.array([0.2, 0.2, 0.2])
    m, v = 0.9 * m + 0.1 * g2, 0.999 * v + 0.001 * g2 * g2
    expected = params["w"] - 0.01 * (m / (1 - 0.9 ** 2)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
    adam.step(params, {"w": g2}, 0.01, ["w"])
    assert np.allclose(params["w"], expected)
    state = adam.state()
    fresh = optim.Adam()
    fresh.load_state(state)
    assert fresh.t == 2 and np.allclose(fresh.m["w"], adam.m["w"])


def test_adam_in_parts_equals_adam_in_one_pass(monkeypatch):
    """Large parameters take their Adam step in parts on several threads
    (``optim.PARALLEL_ADAM_SIZE``): the same values, bit for bit, as one pass, for a size that
    does not divide evenly into the parts."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(37, 29)).astype(np.float32)
    grads = [rng.normal(size=theta.shape).astype(np.float32) for _ in range(3)]
    results = []
    for size in (10**9, 1):
        monkeypatch.setattr(optim, "PARALLEL_ADAM_SIZE", size)
        adam, params = optim.Adam(), {"w": theta.copy()}
        for g in grads:
            adam.step(params, {"w": g}, 0.01, ["w"])
        results.append((params["w"], adam.m["w"], adam.v["w"]))
    assert not np.array_equal(results[0][0], theta)
    for one, parts in zip(*results):
        np.testing.assert_array_equal(parts, one)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_rounds_every_operation_in_the_parameters_dtype(dtype):
    """The compiled Adam (``optim.adam_update``) equals, bit for bit, NumPy's array arithmetic
    with Python-float constants (every operation in the arrays' dtype), over steps with small,
    large and zero gradients; parameters that are not contiguous are updated in place too."""
    rng = np.random.default_rng(3)
    adam = optim.Adam(0.9, 0.999, 1e-8)
    params = {"w": rng.normal(size=(6, 9)).astype(dtype),
              "t": rng.normal(size=(4, 6)).astype(dtype).T}        # a transposed view
    ref = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for t in range(1, 8):
        grads = {k: (rng.normal(size=x.shape) * 10.0 ** rng.integers(-8, 2)).astype(dtype)
                 for k, x in params.items()}
        grads["w"][0] = 0.0
        eta = 10.0 ** -rng.uniform(1, 4)
        adam.step(params, grads, eta, ["w", "t"])
        c1, c2 = 1.0 - 0.9 ** t, 1.0 - 0.999 ** t
        for k, g in grads.items():
            m[k] *= 0.9
            m[k] += (1.0 - 0.9) * g
            v[k] *= 0.999
            v[k] += (1.0 - 0.999) * g * g
            ref[k] -= (eta * (m[k] / c1) / (np.sqrt(v[k] / c2) + 1e-8)).astype(dtype)
    for k in params:
        assert params[k].dtype == dtype
        np.testing.assert_array_equal(params[k], ref[k])
        np.testing.assert_array_equal(adam.m[k], m[k])
        np.testing.assert_array_equal(adam.v[k], v[k])


def test_atomic_files(tmp_path):
    path = tmp_path / "sub" / "a.npy"
    storage.save_npy(str(path), np.arange(3))
    assert np.array_equal(np.load(path), np.arange(3))
    storage.save_json(str(tmp_path / "p.json"), {"a": np.float32(1.5), "b": np.arange(2)})
    assert json.load(open(tmp_path / "p.json")) == {"a": 1.5, "b": [0, 1]}
    log = storage.EpochLog(str(tmp_path / "log.jsonl"))
    log.write(epoch=0, acc=0.5)
    log.write(epoch=1, acc=0.75)
    assert [r["acc"] for r in storage.load_epoch_log(str(tmp_path / "log.jsonl"))] == [0.5, 0.75]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


def test_failed_write_leaves_old_file(tmp_path):
    path = str(tmp_path / "x.txt")
    storage.save_text(path, "old")

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        storage._atomic_write(path, broken)
    assert open(path).read() == "old"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


def test_times_to_steps():
    assert list(times_to_steps([0.0, 0.2, 0.20000001, 0.25, 1.0], 0.1)) == [0, 2, 2, 3, 10]


def test_spike_data_packing_keeps_counts_and_one_spike_per_bin():
    data = SpikeData.from_lists([[3, 3, 1, 9, 12], [0]], [[2, 2, 0, 4, 1], [3]], [1, 0], 10, 5)
    steps, channels = data.sample(0)
    assert list(steps) == [1, 3, 9] and list(channels) == [0, 2, 4]   # duplicate and t >= T gone
    in_ptr, in_ch = data.batch([0, 1])
    assert in_ptr.shape == (2, 11)
    assert list(in_ch[in_ptr[0, 3]:in_ptr[0, 4]]) == [2]
    assert in_ptr[0, -1] - in_ptr[0, 0] == 3 and in_ptr[1, -1] - in_ptr[1, 0] == 1
    sub = data.subset([1])
    assert len(sub) == 1 and sub.labels[0] == 0 and list(sub.sample(0)[1]) == [3]


def unpack(in_ptr, in_ch, b):
    """(step, channel) pairs of batch slot b, read back from the engine layout."""
    return [(n, int(c)) for n in range(in_ptr.shape[1] - 1)
            for c in in_ch[in_ptr[b, n]:in_ptr[b, n + 1]]]


def test_spike_data_built_from_unsorted_arrays_batches_every_spike_at_its_step():
    """The constructor accepts spikes in any order within a sample (e.g. channel order, as the
    Yin-Yang encoder produces them); the engine layout must still put each at its own step."""
    steps = [2, 26, 15, 3, 14, 2, 5, 15, 24, 15]
    channels = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    data = SpikeData(steps, channels, [0, 5, 10], [0, 2], 30, 5)
    in_ptr, in_ch = data.batch([0, 1])
    assert unpack(in_ptr, in_ch, 0) == sorted(zip(steps[:5], channels[:5]))
    assert unpack(in_ptr, in_ch, 1) == sorted(zip(steps[5:], channels[5:]))
    with pytest.raises(ValueError, match="steps"):
        SpikeData([2, 30], [0, 1], [0, 2], [0], 30, 5)
    with pytest.raises(ValueError, match="channels"):
        SpikeData([2, 3], [0, 5], [0, 2], [0], 30, 5)


def test_input_dropout_deletes_spikes():
    rng = np.random.default_rng(0)
    data = SpikeData.from_lists([np.arange(1000) % 100], [np.arange(1000) // 100], [0], 100, 10)
    _, in_ch = data.batch([0], p_drop=0.3, rng=rng)
    assert 600 < len(in_ch) < 800


def test_learning_rate_ease_in_reaches_the_target_and_stays():
    from eventprop.optim import LearningRateSchedule
    lr = LearningRateSchedule(1e-3, ease_in_factor=1.05)
    assert lr.rate == pytest.approx(1e-6)
    rates = [lr.after_trial() for _ in range(200)]
    n_ease = math.ceil(math.log(1000) / math.log(1.05))          # 142 trials
    assert rates[n_ease - 2] < 1e-3 and rates[n_ease - 1] == pytest.approx(1e-3)
    assert max(rates) == pytest.approx(1e-3)


def test_learning_rate_plateau_on_a_synthetic_accuracy_sequence():
    """Rising accuracy: E1 (fast) stays above E2 (slow), no reduction. A noisy plateau: once E2
    has caught up, E1 drops to E2 on the dips and the target halves, at most once per
    min_epochs_fixed + 1 epochs."""
    from eventprop.optim import LearningRateSchedule
    lr = LearningRateSchedule(1e-3, alpha1=0.8, alpha2=0.95, factor=0.5, min_epochs_fixed=5)
    rising = [0.5 + 0.02 * e for e in range(20)]
    assert not any(lr.end_of_epoch(e, a) for e, a in enumerate(rising))
    assert lr.target == 1e-3
    reductions = [e for e in range(20, 120) if lr.end_of_epoch(e, 0.85 - 0.1 * (e % 2))]
    assert reductions and reductions[0] > 20
    assert all(b - a > 5 for a, b in zip(reductions, reductions[1:]))
    assert lr.target == pytest.approx(1e-3 * 0.5 ** len(reductions))
    assert lr.rate == lr.target                                  # jumps to the new target


def test_learning_rate_without_evaluation_halves_every_min_epochs_plus_one():
    """As in the original: accuracy 0 (no evaluation set) makes E1 <= E2 always true."""
    from eventprop.optim import LearningRateSchedule
    lr = LearningRateSchedule(1.0, min_epochs_fixed=3)
    reductions = [e for e in range(1, 13) if lr.end_of_epoch(e, 0.0)]
    assert reductions == [4, 8, 12]


def test_learning_rate_state_round_trip_continues_exactly():
    from eventprop.optim import LearningRateSchedule
    lr = LearningRateSchedule(1e-3, min_epochs_fixed=0)
    for _ in range(20):
        lr.after_trial()
    for e in range(1, 4):
        lr.end_of_epoch(e, 0.9 - 0.1 * e)
    copy = LearningRateSchedule(5.0)
    copy.load_state(lr.state())
    assert (copy.rate, copy.target, copy.ema1, copy.ema2, copy.last_reduction) == \
        (lr.rate, lr.target, lr.ema1, lr.ema2, lr.last_reduction)
    for _ in range(5):
        assert copy.after_trial() == lr.after_trial()


def test_exponential_decay_multiplies_at_every_epoch_start():
    from eventprop.optim import ExponentialDecay
    lr = ExponentialDecay(1.0, 0.5)
    rates = []
    for _ in range(3):
        lr.start_epoch()
        lr.after_trial()
        rates.append(lr.rate)
    assert rates == [0.5, 0.25, 0.125]
    copy = ExponentialDecay(9.0, 0.5)
    copy.load_state(lr.state())
    assert copy.rate == lr.rate
