import numpy as np
import pytest

from eventprop.data.yinyang import generate_yinyang, yinyang_class, yinyang_spike_times


def _to_xy(features, r_big=1.0):
    return features[:, 0] * 2 * r_big - r_big, features[:, 1] * 2 * r_big - r_big


def _uniform_disc(n, seed, r_big=1.0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-r_big, r_big, size=(n, 2))
    xy = xy[xy[:, 0] ** 2 + xy[:, 1] ** 2 < r_big ** 2]
    return xy[:, 0], xy[:, 1]


def test_reproducible_and_seed_dependent():
    f1, l1 = generate_yinyang(500, seed=3)
    f2, l2 = generate_yinyang(500, seed=3)
    f3, l3 = generate_yinyang(500, seed=4)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(l1, l2)
    assert not np.array_equal(f1, f3)
    assert not np.array_equal(l1, l3)


def test_shapes_and_dtypes():
    features, labels = generate_yinyang(100, seed=0)
    assert features.shape == (100, 4) and features.dtype == np.float64
    assert labels.shape == (100,) and labels.dtype == np.int64
    features, labels = generate_yinyang(0, seed=0)
    assert features.shape == (0, 4) and labels.shape == (0,)


def test_features_range_and_disc():
    features, _ = generate_yinyang(2000, seed=1)
    assert np.all(features >= 0.0) and np.all(features <= 1.0)
    np.testing.assert_array_equal(features[:, 2], 1.0 - features[:, 0])
    np.testing.assert_array_equal(features[:, 3], 1.0 - features[:, 1])
    x, y = _to_xy(features)
    assert np.all(x ** 2 + y ** 2 <= 1.0 + 1e-12)


def test_labels_match_geometry():
    for r_small, r_big in [(0.2, 1.0), (0.3, 2.0)]:
        features, labels = generate_yinyang(3000, seed=2, r_small=r_small, r_big=r_big)
        x, y = _to_xy(features, r_big)
        np.testing.assert_array_equal(labels, yinyang_class(x, y, r_small, r_big))


def test_class_balance():
    _, labels = generate_yinyang(30000, seed=5)
    fractions = np.bincount(labels, minlength=3) / len(labels)
    assert np.all(np.abs(fractions - 1.0 / 3.0) < 0.02)


@pytest.mark.parametrize("r_small,r_big", [(0.2, 1.0), (0.15, 2.0)])
def test_region_areas(r_small, r_big):
    x, y = _uniform_disc(1_000_000, seed=6, r_big=r_big)
    disc_area = np.pi * r_big ** 2
    areas = np.bincount(yinyang_class(x, y, r_small, r_big), minlength=3) / len(x) * disc_area
    dot_area = 2 * np.pi * r_small ** 2
    half = (disc_area - dot_area) / 2
    np.testing.assert_allclose(areas, [half, half, dot_area], rtol=0.02)


def test_known_points():
    x = np.array([0.5, -0.5, 0.5, -0.5, 0.0, 0.0, 0.9, -0.9])
    y = np.array([0.0, 0.0, 0.3, -0.3, 0.9, -0.9, 0.1, -0.1])
    np.testing.assert_array_equal(yinyang_class(x, y), [2, 2, 0, 1, 1, 0, 0, 1])


def test_point_symmetry():
    r_small, r_big = 0.2, 1.0
    x, y = _uniform_disc(200_000, seed=7)
    d_plus = np.hypot(x - 0.5 * r_big, y)
    d_minus = np.hypot(x + 0.5 * r_big, y)
    eps = 1e-3
    away = ((np.abs(d_plus - r_small) > eps) & (np.abs(d_minus - r_small) > eps)
            & (np.abs(d_plus - 0.5 * r_big) > eps) & (np.abs(d_minus - 0.5 * r_big) > eps)
            & (np.abs(y) > eps))
    x, y = x[away], y[away]
    cls = yinyang_class(x, y, r_small, r_big)
    mirrored = yinyang_class(-x, -y, r_small, r_big)
    np.testing.assert_array_equal(mirrored[cls == 0], 1)
    np.testing.assert_array_equal(mirrored[cls == 1], 0)
    np.testing.assert_array_equal(mirrored[cls == 2], 2)
    assert np.all(np.bincount(cls, minlength=3) > 0)


def test_spike_time_encoding():
    dt, trial_ms = 0.1, 30.0
    features, _ = generate_yinyang(1000, seed=8)
    times = yinyang_spike_times(features, dt, trial_ms)
    assert times.shape == (1000, 5) and times.dtype == np.float64
    np.testing.assert_array_equal(times[:, 0], 2 * dt)
    np.testing.assert_allclose(times[:, 1:], 2 * dt + features * (trial_ms - 4 * dt))
    assert np.all(times >= 2 * dt - 1e-12)
    assert np.all(times <= trial_ms - 2 * dt + 1e-12)
    edge = yinyang_spike_times(np.array([[0.0, 1.0, 1.0, 0.0]]), dt, trial_ms)
    np.testing.assert_allclose(edge[0], [2 * dt, 2 * dt, trial_ms - 2 * dt,
                                         trial_ms - 2 * dt, 2 * dt])


def test_invalid_arguments():
    with pytest.raises(ValueError):
        generate_yinyang(10, seed=0, r_small=0.6)
    with pytest.raises(ValueError):
        yinyang_spike_times(np.zeros((3, 2)), 0.1, 30.0)
    with pytest.raises(ValueError):
        yinyang_spike_times(np.zeros((3, 4)), 0.1, 0.3)
