"""The Yin-Yang data set (Kriener et al. 2022, "The Yin-Yang dataset").

Points in a disc of radius r_big are labelled yin (0), yang (1) or dot (2). Each sample is
described by four features (x', y', 1 - x', 1 - y') in [0, 1], and the features can be turned
into spike times with ``yinyang_spike_times``.
"""
import numpy as np

N_CLASSES = 3
N_FEATURES = 4


def _check_radii(r_small, r_big):
    if not 0.0 < r_small < 0.5 * r_big:
        raise ValueError("radii must satisfy 0 < r_small < r_big / 2")


def yinyang_class(x, y, r_small=0.2, r_big=1.0):
    """Class of points (numpy arrays) in the disc of radius r_big centred at 0: 0 = yin,
    1 = yang, 2 = dot."""
    _check_radii(r_small, r_big)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d_plus = np.hypot(x - 0.5 * r_big, y)
    d_minus = np.hypot(x + 0.5 * r_big, y)

    is_dot = (d_plus < r_small) | (d_minus < r_small)
    is_yang = ((d_plus <= r_small)
               | ((d_minus > r_small) & (d_minus <= 0.5 * r_big))
               | ((y > 0) & (d_plus > 0.5 * r_big)))

    classes = np.where(is_yang, 1, 0).astype(np.int64)
    classes[is_dot] = 2
    return classes


def _points_in_disc(rng, n, r_big):
    """Up to n points drawn uniformly in the disc (rejection from the enclosing square)."""
    xy = rng.uniform(-r_big, r_big, size=(n, 2))
    inside = xy[:, 0] ** 2 + xy[:, 1] ** 2 < r_big ** 2
    return xy[inside]


def generate_yinyang(n_samples, seed, r_small=0.2, r_big=1.0):
    """Returns (features, labels): features float64 (n_samples, 4) = (x', y', 1-x', 1-y') with
    x' = (x + r_big)/(2 r_big) in [0, 1], labels int64 (n_samples,)."""
    _check_radii(r_small, r_big)
    n_samples = int(n_samples)
    if n_samples < 0:
        raise ValueError("n_samples must be non-negative")

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, size=n_samples).astype(np.int64)

    # Rejection sampling: draw batches of candidates and give each class, in order, the
    # candidates of that class until its quota (number of samples with that target) is full.
    quota = np.bincount(labels, minlength=N_CLASSES)
    found = [[] for _ in range(N_CLASSES)]
    n_found = np.zeros(N_CLASSES, dtype=np.int64)
    while np.any(n_found < quota):
        batch = max(4 * int(np.sum(quota - n_found)), 1024)
        cand = _points_in_disc(rng, batch, r_big)
        cls = yinyang_class(cand[:, 0], cand[:, 1], r_small, r_big)
        for c in range(N_CLASSES):
            missing = quota[c] - n_found[c]
            if missing > 0:
                take = cand[cls == c][:missing]
                found[c].append(take)
                n_found[c] += len(take)

    xy = np.empty((n_samples, 2), dtype=np.float64)
    for c in range(N_CLASSES):
        if quota[c] > 0:
            xy[labels == c] = np.concatenate(found[c])

    scaled = (xy + r_big) / (2.0 * r_big)
    features = np.empty((n_samples, N_FEATURES), dtype=np.float64)
    features[:, :2] = scaled
    features[:, 2:] = 1.0 - scaled
    return features, labels


def yinyang_spike_times(features, dt, trial_ms):
    """Spike-time encoding: returns float64 array (n_samples, 5): input 0 is a bias neuron
    firing at 2*dt; input k+1 fires at 2*dt + features[:, k] * (trial_ms - 4*dt)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != N_FEATURES:
        raise ValueError("features must have shape (n_samples, 4)")
    if dt <= 0 or trial_ms <= 4 * dt:
        raise ValueError("need dt > 0 and trial_ms > 4 * dt")
    t_first = 2.0 * dt
    span = trial_ms - 4.0 * dt
    times = np.empty((features.shape[0], N_FEATURES + 1), dtype=np.float64)
    times[:, 0] = t_first
    times[:, 1:] = t_first + features * span
    return times
