"""augmentations: per-epoch data manipulations on small synthetic SpikeData."""
import numpy as np
import pytest

from eventprop.data.augmentations import (apply_augmentations, balance_classes, blend, DelayLine, id_jitter,
                           normalise_spike_number, random_dilate, random_shift)
from eventprop.data.spikes import SpikeData, times_to_steps

N_STEPS, N_CH = 60, 40


def make_data(n=15, seed=0, n_classes=3, lo=5, hi=40):
    """n random samples with unbalanced classes (label i % n_classes for the first n - 2, then
    two more of class 0), lo..hi spike draws each (duplicates collapse)."""
    rng = np.random.default_rng(seed)
    steps, chans = [], []
    for _ in range(n):
        k = int(rng.integers(lo, hi))
        steps.append(rng.integers(0, N_STEPS, size=k))
        chans.append(rng.integers(0, N_CH, size=k))
    labels = np.concatenate([np.arange(n - 2) % n_classes, [0, 0]])
    return SpikeData.from_lists(steps, chans, labels, N_STEPS, N_CH)


def one_sample(pairs, label=0, n_steps=N_STEPS, n_ch=N_CH):
    """A single-sample SpikeData from (step, channel) pairs."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return SpikeData.from_lists([pairs[:, 0]], [pairs[:, 1]], [label], n_steps, n_ch)


def spike_set(data, i):
    steps, chans = data.sample(i)
    return set(zip(steps.tolist(), chans.tolist()))


def snapshot(data):
    return [a.copy() for a in (data.steps, data.channels, data.offsets, data.labels)]


def assert_unchanged(data, snap):
    for a, b in zip((data.steps, data.channels, data.offsets, data.labels), snap):
        np.testing.assert_array_equal(a, b)


def assert_valid(data):
    """Steps and channels in range, offsets consistent, one spike per (channel, step) per sample."""
    assert data.offsets[0] == 0 and data.offsets[-1] == len(data.steps)
    assert np.all(np.diff(data.offsets) >= 0)
    if len(data.steps):
        assert data.steps.min() >= 0 and data.steps.max() < data.n_steps
        assert data.channels.min() >= 0 and data.channels.max() < data.n_channels
    for i in range(len(data)):
        steps, chans = data.sample(i)
        assert len(set(zip(steps.tolist(), chans.tolist()))) == len(steps)


def assert_same(a, b):
    assert len(a) == len(b) and a.n_steps == b.n_steps and a.n_channels == b.n_channels
    for x, y in zip((a.steps, a.channels, a.offsets, a.labels),
                    (b.steps, b.channels, b.offsets, b.labels)):
        np.testing.assert_array_equal(x, y)


THINNING_AUGMENTATIONS = {
    "random_shift": lambda d, rng: random_shift(d, 15, rng),
    "random_dilate": lambda d, rng: random_dilate(d, 0.5, 2.0, 0.5, rng),
    "ID_jitter": lambda d, rng: id_jitter(d, 6.0, rng),
}


@pytest.mark.parametrize("name", list(THINNING_AUGMENTATIONS))
def test_common_invariants(name):
    aug = THINNING_AUGMENTATIONS[name]
    data = make_data()
    snap = snapshot(data)
    out = aug(data, np.random.default_rng(1))
    assert out is not data
    assert_unchanged(data, snap)
    assert_valid(out)
    np.testing.assert_array_equal(out.labels, data.labels)
    assert np.all(out.spike_counts() <= data.spike_counts())
    assert out.spike_counts().sum() < data.spike_counts().sum()    # these settings do drop some
    assert_same(out, aug(data, np.random.default_rng(1)))           # same seed, same result
    other = aug(data, np.random.default_rng(2))
    assert not (len(other.steps) == len(out.steps) and np.array_equal(other.steps, out.steps)
                and np.array_equal(other.channels, out.channels))


def test_random_shift_one_shift_per_sample():
    data = make_data(n=40, seed=3)
    s = 10
    out = random_shift(data, s, np.random.default_rng(5))
    seen = []
    for i in range(len(data)):
        src, got = spike_set(data, i), spike_set(out, i)
        fits = [k for k in range(-s, s + 1)
                if got == {(n, c + k) for n, c in src if 0 <= c + k < N_CH}]
        assert fits, f"sample {i} is not a single channel shift of its input"
        seen.extend(fits if len(fits) == 1 else [])
    seen = np.array(seen)
    assert np.all(np.abs(seen) <= s - 1)           # truncation of U(-s, s) never reaches +-s
    assert len(np.unique(seen)) > 3


def test_random_shift_zero_is_identity():
    data = make_data()
    assert_same(random_shift(data, 0, np.random.default_rng(0)), data)


def test_random_shift_drops_out_of_range():
    data = one_sample([(1, 0), (2, N_CH - 1), (3, N_CH // 2)])
    for seed in range(20):
        out = random_shift(data, 5, np.random.default_rng(seed))
        k = int(np.trunc(np.random.default_rng(seed).uniform(-5, 5, size=1))[0])
        expected = {(n, c + k) for n, c in spike_set(data, 0) if 0 <= c + k < N_CH}
        assert spike_set(out, 0) == expected


def test_random_dilate_unit_factor_is_identity():
    data = make_data()
    for dt in (1.0, 0.1, 0.7):
        assert_same(random_dilate(data, 1.0, 1.0, dt, np.random.default_rng(0)), data)


@pytest.mark.parametrize("dt", [1.0, 0.5, 0.1])
def test_random_dilate_factor_two(dt):
    data = make_data()
    out = random_dilate(data, 2.0, 2.0, dt, np.random.default_rng(0))
    for i in range(len(data)):
        expected = set()
        for n, c in spike_set(data, i):
            m = int(times_to_steps(2.0 * n * dt, dt))
            assert m == 2 * n
            if 2.0 * n * dt < N_STEPS * dt:
                expected.add((m, c))
        assert spike_set(out, i) == expected
    assert out.steps.max() < N_STEPS and out.spike_counts().sum() < data.spike_counts().sum()


def test_random_dilate_off_grid_and_collapse():
    # factor 1.5: step n -> first step >= 1.5 n; factor 0.5: steps 1 and 2 both go to step 1
    data = one_sample([(1, 3), (2, 3), (3, 3), (39, 3), (40, 3)])
    up = random_dilate(data, 1.5, 1.5, 1.0, np.random.default_rng(0))
    assert spike_set(up, 0) == {(2, 3), (3, 3), (5, 3), (59, 3)}   # 1.5*40 = 60 >= T dropped
    down = random_dilate(data, 0.5, 0.5, 1.0, np.random.default_rng(0))
    assert spike_set(down, 0) == {(1, 3), (2, 3), (20, 3)}


def test_id_jitter_zero_is_identity_and_keeps_steps():
    data = make_data()
    assert_same(id_jitter(data, 0.0, np.random.default_rng(0)), data)
    out = id_jitter(data, 3.0, np.random.default_rng(0))
    for i in range(len(data)):
        src_steps = set(data.sample(i)[0].tolist())
        assert set(out.sample(i)[0].tolist()) <= src_steps     # only channels move


def test_id_jitter_per_spike_shift_matches_rule():
    data = one_sample([(n, 20) for n in range(N_STEPS)])       # one spike per step: no collapse
    out = id_jitter(data, 2.0, np.random.default_rng(4))
    shifts = np.rint(2.0 * np.random.default_rng(4).standard_normal(N_STEPS)).astype(int)
    expected = {(n, 20 + k) for n, k in enumerate(shifts) if 0 <= 20 + k < N_CH}
    assert spike_set(out, 0) == expected
    assert len(np.unique(shifts)) > 3                           # spikes move independently


def test_blend_size_labels_speakers():
    data = make_data()
    speakers = np.arange(len(data)) % 4 + 10
    snap = snapshot(data)
    out, spk = blend(data, [0.5, 0.5], 40, np.random.default_rng(0), 1.0, speakers=speakers)
    assert_unchanged(data, snap)
    assert len(out) == 40 and len(spk) == 40
    assert_valid(out)
    assert_same(out.subset(np.arange(len(data))), data)          # originals kept, in order
    np.testing.assert_array_equal(spk[:len(data)], speakers)
    pairs = set(zip(data.labels.tolist(), speakers.tolist()))
    for lab, sp in zip(out.labels[len(data):].tolist(), spk[len(data):].tolist()):
        assert (lab, sp) in pairs                                # label and speaker of an anchor
    assert len(set(out.labels[len(data):].tolist())) > 1
    again = blend(data, [0.5, 0.5], 40, np.random.default_rng(0), 1.0)
    assert_same(again, out)
    assert len(blend(data, [0.5], len(data) - 3, np.random.default_rng(0), 1.0)) == len(data)
    assert_valid(blend(data, [0.7, 0.7, 0.7], 40, np.random.default_rng(0), 0.3))   # off-grid


def test_blend_single_sample_gives_same_class_copies():
    data = make_data()
    out = blend(data, [1.0], 50, np.random.default_rng(1), 1.0)
    for j in range(len(data), 50):
        got = spike_set(out, j)
        assert any(got == spike_set(data, i) for i in range(len(data))
                   if data.labels[i] == out.labels[j])


def test_blend_aligns_means():
    # class 0: b is a moved by +4 channels and +4 steps, so a pair (a, b) aligns both to a + 2
    a = [(10, 10), (14, 12), (20, 16), (24, 18)]
    b = [(n + 4, c + 4) for n, c in a]
    mid = {(n + 2, c + 2) for n, c in a}
    other = [(5, 30), (6, 31)]
    data = SpikeData.from_lists([np.array(x)[:, 0] for x in (a, b, other)],
                                [np.array(x)[:, 1] for x in (a, b, other)], [0, 0, 1],
                                N_STEPS, N_CH)
    out = blend(data, [1.0, 1.0], 80, np.random.default_rng(2), 1.0)
    kinds = set()
    for j in range(3, 80):
        got = spike_set(out, j)
        if out.labels[j] == 1:
            assert got == set(other)
            continue
        assert got in (set(a), set(b), mid)
        kinds.add(frozenset(got))
    assert len(kinds) == 3
    empty = blend(data, [0.0, 0.0], 10, np.random.default_rng(2), 1.0)
    assert np.all(empty.spike_counts()[3:] == 0)


def test_blend_thins_with_probabilities():
    data = one_sample([(n, c) for n in range(0, N_STEPS, 2) for c in range(0, N_CH, 2)])
    out = blend(data, [0.25], 30, np.random.default_rng(3), 1.0)
    frac = out.spike_counts()[1:].mean() / data.spike_counts()[0]
    assert 0.2 < frac < 0.3


def test_augmentation_order_matters():
    """Shift then dilate draws the shift first; dilate then shift draws the factor first: with
    the same seed the two orders give different, individually predictable results."""
    data = one_sample([(n, 20) for n in range(0, 30, 3)])
    s, lo, hi, seed = 10, 0.5, 2.0, 7

    def expected(first):
        r = np.random.default_rng(seed)
        if first == "shift":
            k = np.trunc(r.uniform(-s, s, size=1))[0]
            f = np.exp(r.uniform(np.log(lo), np.log(hi), size=1))[0]
        else:
            f = np.exp(r.uniform(np.log(lo), np.log(hi), size=1))[0]
            k = np.trunc(r.uniform(-s, s, size=1))[0]
        return {(int(times_to_steps(f * n, 1.0)), 20 + int(k)) for n, _ in spike_set(data, 0)
                if f * n < N_STEPS}

    shift_dilate = apply_augmentations(data, {"random_shift": s, "random_dilate": [lo, hi]}, 1.0,
                                       np.random.default_rng(seed))
    dilate_shift = apply_augmentations(data, {"random_dilate": [lo, hi], "random_shift": s}, 1.0,
                                       np.random.default_rng(seed))
    assert spike_set(shift_dilate, 0) == expected("shift")
    assert spike_set(dilate_shift, 0) == expected("dilate")
    assert spike_set(shift_dilate, 0) != spike_set(dilate_shift, 0)


def test_apply_augmentations_ignores_other_keys_and_needs_n_train():
    data = make_data()
    out = apply_augmentations(data, {"NORMALISE_SPIKE_NUMBER": True, "foo": 3}, 1.0,
                              np.random.default_rng(0))
    assert out is not data
    assert_same(out, data)
    with pytest.raises(ValueError):
        apply_augmentations(data, {"blend": [0.5, 0.5]}, 1.0, np.random.default_rng(0))
    speakers = np.arange(len(data))
    out, spk = apply_augmentations(data, {"random_shift": 5, "blend": [0.5, 0.5]}, 1.0,
                                   np.random.default_rng(0), n_train=30, speakers=speakers)
    assert len(out) == 30 and len(spk) == 30
    assert_valid(out)


def batch_spikes(data, indices, **kw):
    """Per batch slot: sorted list of (step, channel) of the engine layout; checks the layout."""
    in_ptr, in_ch = data.batch(indices, **kw)
    assert in_ptr.shape == (len(indices), data.n_steps + 1)
    assert np.all(np.diff(in_ptr, axis=1) >= 0) and in_ptr[-1, -1] == len(in_ch)
    assert np.array_equal(in_ptr[1:, 0], in_ptr[:-1, -1])
    return [sorted((n, int(c)) for n in range(data.n_steps)
                   for c in in_ch[in_ptr[b, n]:in_ptr[b, n + 1]]) for b in range(len(indices))]


def test_delay_line_layout_and_lost_spikes():
    data = one_sample([(1, 2), (8, 4)], n_steps=10, n_ch=5)
    out = DelayLine(data, 2, 3.0, 1.0)
    assert out.n_channels == 15 and out.n_steps == 10 and len(out) == 1
    assert batch_spikes(out, [0])[0] == [(1, 2), (4, 7), (7, 12), (8, 4)]   # 11, 14 >= T: lost
    off = DelayLine(data, 2, 2.5, 1.0)                                      # off-grid: next step
    assert batch_spikes(off, [0])[0] == [(1, 2), (4, 7), (6, 12), (8, 4)]
    finer = DelayLine(data, 1, 0.3, 0.2)                          # 0.3 ms at dt 0.2 -> 2 steps
    assert batch_spikes(finer, [0])[0] == [(1, 2), (3, 7), (8, 4)]  # step 10 is past the end


def test_delay_line_general():
    data = make_data()
    snap = snapshot(data)
    out = DelayLine(data, 3, 5.0, 1.0)
    assert out.n_channels == 4 * N_CH
    np.testing.assert_array_equal(out.labels, data.labels)
    order = np.random.default_rng(1).permutation(len(data))
    for b, got in enumerate(batch_spikes(out, order)):
        i = order[b]
        got = set(got)
        assert {(n, c) for n, c in got if c < N_CH} == spike_set(data, i)   # copy 0 unchanged
        for d in range(1, 4):
            copy = {(n - 5 * d, c - d * N_CH) for n, c in got if d * N_CH <= c < (d + 1) * N_CH}
            assert copy == {(n, c) for n, c in spike_set(data, i) if n + 5 * d < N_STEPS}
    assert_unchanged(data, snap)
    assert batch_spikes(DelayLine(data, 0, 5.0, 1.0), order) == batch_spikes(data, order)


def test_delay_line_dropout_acts_on_every_copy_independently():
    data = one_sample([(n, c) for n in range(50) for c in range(20)], n_steps=100, n_ch=20)
    out = DelayLine(data, 1, 10.0, 1.0)
    got = batch_spikes(out, [0], p_drop=0.5, rng=np.random.default_rng(0))[0]
    first = {(n, c) for n, c in got if c < 20}
    second = {(n - 10, c - 20) for n, c in got if c >= 20}
    assert 400 < len(first) < 600 and 400 < len(second) < 600
    assert first != second


def test_balance_classes():
    data = make_data(n=23)                       # classes 0, 1, 2 with 9, 7, 7 samples
    counts = np.bincount(data.labels)
    assert len(set(counts.tolist())) > 1
    idx = balance_classes(data, np.random.default_rng(0))
    assert len(np.unique(idx)) == len(idx) and idx.min() >= 0 and idx.max() < len(data)
    np.testing.assert_array_equal(np.bincount(data.labels[idx]), [counts.min()] * 3)
    np.testing.assert_array_equal(idx, balance_classes(data, np.random.default_rng(0)))
    draws = {tuple(balance_classes(data, np.random.default_rng(s))) for s in range(10)}
    assert len(draws) > 1                        # fresh random subsample per call


def test_normalise_spike_number():
    rng = np.random.default_rng(0)
    n_min = 20

    def dataset(counts, seed):
        r = np.random.default_rng(seed)
        steps, chans = [], []
        for k in counts:                          # k distinct (step, channel) pairs
            key = r.choice(N_STEPS * N_CH, size=k, replace=False)
            steps.append(key // N_CH)
            chans.append(key % N_CH)
        return SpikeData.from_lists(steps, chans, np.zeros(len(counts), int), N_STEPS, N_CH)

    train = dataset([n_min] + list(rng.integers(200, 600, size=59)), 1)
    evals = dataset([5] + list(rng.integers(100, 800, size=59)), 2)
    snap_t, snap_e = snapshot(train), snapshot(evals)
    new_train, (new_eval,) = normalise_spike_number(train, [evals], np.random.default_rng(3))
    assert_unchanged(train, snap_t)
    assert_unchanged(evals, snap_e)
    for old, new in ((train, new_train), (evals, new_eval)):
        assert_valid(new)
        assert np.all(new.spike_counts() <= old.spike_counts())
        for i in range(len(old)):
            assert spike_set(new, i) <= spike_set(old, i)       # thinning only
    assert new_train.spike_counts()[0] == n_min                 # keep probability 1
    assert new_eval.spike_counts()[0] == 5                      # below the minimum: kept
    assert abs(new_train.spike_counts().mean() - n_min) < 0.15 * n_min
    assert abs(new_eval.spike_counts()[1:].mean() - n_min) < 0.15 * n_min
    single_train, single_eval = normalise_spike_number(train, evals, np.random.default_rng(3))
    assert isinstance(single_eval, SpikeData)
    assert_same(single_train, new_train)


# --- the fast paths of eventprop.data.spikes and eventprop.data.augmentations against straightforward definitions -----

def reference_from_flat(sample, steps, channels, labels, n_steps, n_channels):
    """from_flat by its definition: drop spikes off the grid, sort the keys (sample, step,
    channel) and keep each once."""
    sample, steps, channels = (np.asarray(a, dtype=np.int64) for a in (sample, steps, channels))
    keep = (steps >= 0) & (steps < n_steps) & (channels >= 0) & (channels < n_channels)
    keys = sorted(set(zip(sample[keep].tolist(), steps[keep].tolist(),
                          channels[keep].tolist())))
    counts = np.bincount(np.array([k[0] for k in keys], dtype=np.int64),
                         minlength=len(labels))
    out_steps = np.array([k[1] for k in keys], dtype=np.int64)
    out_channels = np.array([k[2] for k in keys], dtype=np.int64)
    return out_steps, out_channels, np.concatenate([[0], np.cumsum(counts)])


def assert_matches_flat(data, sample, steps, channels):
    """``data`` (a SpikeData) equals the reference from_flat of the flat arrays."""
    ref_steps, ref_channels, ref_offsets = reference_from_flat(
        sample, steps, channels, data.labels, data.n_steps, data.n_channels)
    np.testing.assert_array_equal(data.steps, ref_steps)
    np.testing.assert_array_equal(data.channels, ref_channels)
    np.testing.assert_array_equal(data.offsets, ref_offsets)


def with_repeats(seed, n=12, n_steps=9, n_ch=7, most=50):
    """A SpikeData made by the constructor itself, so that it may hold repeated (step, channel)
    pairs (from_flat never makes them)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, most, n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return SpikeData(rng.integers(0, n_steps, offsets[-1]), rng.integers(0, n_ch, offsets[-1]),
                     offsets, rng.integers(0, 3, n), n_steps, n_ch)


@pytest.mark.parametrize("n_steps", [7, 60, 5000])      # counting sort / key sort by sample
def test_from_flat_matches_definition(n_steps):
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 12))
        per = rng.integers(0, int(rng.choice([4, 40, 300])), n)
        sample = rng.permutation(np.repeat(np.arange(n), per))
        steps = rng.integers(-2, n_steps + 2, len(sample))
        channels = rng.integers(-2, N_CH + 2, len(sample))
        if seed % 3 == 0:                             # already ordered, as most callers pass
            order = np.lexsort((channels, steps, sample))
            sample, steps, channels = sample[order], steps[order], channels[order]
        data = SpikeData.from_flat(sample, steps, channels, np.arange(n) % 3, n_steps, N_CH)
        assert_matches_flat(data, sample, steps, channels)
        assert data.steps.dtype == np.int32 and data.channels.dtype == np.int32
    with pytest.raises(ValueError, match="sample indices"):
        SpikeData.from_flat([0, 2], [1, 1], [1, 1], [0, 0], 10, 5)
    dropped = SpikeData.from_flat([0, 5], [1, 99], [1, 1], [0], 10, 5)   # off-grid: not checked
    assert dropped.spike_counts().tolist() == [1]


def test_constructor_orders_and_checks_like_a_sort():
    for seed in range(20):
        data = with_repeats(seed)
        sample = data.sample_index()
        rng = np.random.default_rng(seed)
        steps = rng.integers(0, 9, len(sample))
        channels = rng.integers(0, 7, len(sample))
        built = SpikeData(steps, channels, data.offsets, data.labels, 9, 7)
        order = np.lexsort((channels, steps, sample))
        np.testing.assert_array_equal(built.steps, steps[order])
        np.testing.assert_array_equal(built.channels, channels[order])
    with pytest.raises(ValueError, match="offsets"):
        SpikeData([1, 2], [0, 0], [0, 3, 2], [0, 0], 10, 5)


def test_subset_matches_definition():
    data = make_data(n=20, seed=4)
    order = np.random.default_rng(0).integers(0, len(data), 35)
    for indices in (order, order[:0], [3], [-1, 0, -20]):
        sub = data.subset(indices)
        idx = np.asarray(indices, dtype=np.int64) % len(data)
        assert len(sub) == len(idx)
        np.testing.assert_array_equal(sub.labels, data.labels[idx])
        for b, i in enumerate(idx):
            for got, want in zip(sub.sample(b), data.sample(i)):
                np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError):
        data.subset([len(data)])


def test_random_shift_matches_definition():
    for seed in range(20):
        data = make_data(n=25, seed=seed) if seed % 2 else with_repeats(seed)
        out = random_shift(data, 5, np.random.default_rng(seed))
        shifts = np.trunc(np.random.default_rng(seed).uniform(-5, 5, len(data))).astype(int)
        sample = data.sample_index()
        assert_matches_flat(out, sample, data.steps, data.channels + shifts[sample])
        np.testing.assert_array_equal(out.labels, data.labels)


def reference_blend(data, probs, n_total, rng, dt, speakers):
    """blend by its docstring, one new sample and one member at a time."""
    n_old, counts = len(data), data.spike_counts()
    sample = data.sample_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ch = np.bincount(sample, weights=data.channels, minlength=n_old) / counts
        mean_t = np.bincount(sample, weights=data.steps * dt, minlength=n_old) / counts
    flat = [(sample, data.steps, data.channels)]
    labels, new_speakers = list(data.labels), list(speakers)
    for j in range(max(n_total - n_old, 0)):
        anchor = int(rng.integers(n_old))
        labels.append(data.labels[anchor])
        new_speakers.append(speakers[anchor])
        group = rng.choice(np.flatnonzero(data.labels == data.labels[anchor]), size=len(probs),
                           replace=True)
        full = counts[group] > 0
        if full.any():
            g_ch, g_t = mean_ch[group[full]].mean(), mean_t[group[full]].mean()
        for i, k in enumerate(group):
            if not full[i]:
                continue
            steps, channels = data.sample(k)
            keep = rng.random(len(steps)) < probs[i]
            t = steps[keep] * dt + float(np.rint(g_t - mean_t[k]))
            inside = t < data.n_steps * dt
            flat.append((np.full(inside.sum(), n_old + j), times_to_steps(t[inside], dt),
                         channels[keep][inside] + int(np.rint(g_ch - mean_ch[k]))))
    sample, steps, channels = (np.concatenate(a) for a in zip(*flat))
    return (*reference_from_flat(sample, steps, channels, labels, data.n_steps,
                                 data.n_channels), np.array(labels), np.array(new_speakers))


def assert_matches_reference(out, speakers, ref):
    for got, want in zip((out.steps, out.channels, out.offsets, out.labels, speakers), ref):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dt", [1.0, 0.3, 0.7])
def test_blend_matches_definition(dt, monkeypatch):
    from eventprop.data import augmentations
    monkeypatch.setattr(augmentations, "_BLEND_ROOM", (0.0, 0))     # make the output grow
    for seed in range(12):
        data = make_data(n=14, seed=seed) if seed % 3 else with_repeats(seed)
        probs = list(np.random.default_rng(seed).uniform(0.1, 1.0, 1 + seed % 4))
        speakers = np.arange(len(data)) + 100
        out, spk = augmentations._blend(data, probs, 60, np.random.default_rng(seed), dt,
                                        speakers=speakers, buffer_size=97)   # many chunks
        ref = reference_blend(data, probs, 60, np.random.default_rng(seed), dt, speakers)
        assert_matches_reference(out, spk, ref)
        again = blend(data, probs, 60, np.random.default_rng(seed), dt)
        assert_same(again, out)


@pytest.mark.parametrize("dt", [1.0, 0.3])
def test_shift_then_blend_matches_the_two_in_turn(dt):
    """apply_augmentations does "random_shift" followed by "blend" in one pass."""
    for seed in range(12):
        data = make_data(n=14, seed=seed) if seed % 2 else with_repeats(seed)
        speakers = np.arange(len(data))
        aug = {"random_shift": 3, "NORMALISE_SPIKE_NUMBER": False, "blend": [0.8, 0.5]}
        out, spk = apply_augmentations(data, aug, dt, np.random.default_rng(seed), n_train=50,
                                       speakers=speakers)
        rng = np.random.default_rng(seed)
        shifted = random_shift(data, 3, rng)
        ref = reference_blend(shifted, [0.8, 0.5], 50, rng, dt, speakers)
        assert_matches_reference(out, spk, ref)


def test_no_augmentation_shares_read_only_arrays():
    data = make_data()
    snap = snapshot(data)
    out = apply_augmentations(data, {"NORMALISE_SPIKE_NUMBER": False}, 1.0,
                              np.random.default_rng(0))
    assert out is not data
    assert_same(out, data)
    with pytest.raises(ValueError):
        out.steps[0] = 1
    out.labels[0] = 99                              # labels are its own
    assert_unchanged(data, snap)
