"""Per-epoch manipulations of SHD/SSC spike data (spec §5.3): class balancing, spike-number
normalisation, the four augmentations of the ``AUGMENTATION`` dict and the input delay line.

Every function takes a ``SpikeData`` and returns a NEW one (the input is never modified). Spikes
live on the integer step grid; where an operation moves a spike in time, the new time
t = step * dt (ms) is converted back with the input sources' emission rule ``times_to_steps``
(first step whose start time is >= t, spec §2.9). Spikes that leave [0, n_steps) or
[0, n_channels) are dropped and duplicate (channel, step) pairs of a sample collapse into one
spike, as they would at the input population.
"""
import numpy as np

from spike_data import SpikeData, times_to_steps

AUGMENTATION_KEYS = ("random_shift", "random_dilate", "ID_jitter", "blend")


def balance_classes(data, rng):
    """Indices (ascending) of a random subsample with every class cut down to the smallest class
    count (spec §5.3 item 1, BALANCE_TRAIN/EVAL_CLASSES). Use ``data.subset(idx)`` (and
    ``speakers[idx]``) to apply it."""
    classes, counts = np.unique(data.labels, return_counts=True)
    if len(classes) == 0:
        return np.zeros(0, dtype=np.int64)
    n_min = counts.min()
    chosen = [rng.choice(np.flatnonzero(data.labels == c), size=n_min, replace=False)
              for c in classes]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def thin(data, keep_prob, rng):
    """Keep each spike of sample i independently with probability keep_prob[i] (clipped to 1)."""
    keep_prob = np.minimum(np.asarray(keep_prob, dtype=np.float64), 1.0)
    sample = data.sample_index()
    keep = rng.random(len(sample)) < keep_prob[sample]
    return SpikeData.from_flat(sample[keep], data.steps[keep], data.channels[keep],
                               data.labels, data.n_steps, data.n_channels)


def normalise_spike_number(train, others, rng):
    """NORMALISE_SPIKE_NUMBER (spec §5.3 item 2): n_min = smallest spike count among the training
    samples; every training AND evaluation sample keeps each spike with probability
    n_min / (its own count) (probability 1 for samples at or below n_min).

    ``others`` is one SpikeData, a sequence of them, or None. Returns (new_train, new_others) with
    new_others of the same shape (SpikeData, list or None)."""
    counts = train.spike_counts()
    n_min = counts.min() if len(counts) else 0

    def keep_prob(d):
        c = d.spike_counts().astype(np.float64)
        return np.where(c > 0, n_min / np.maximum(c, 1.0), 1.0)

    new_train = thin(train, keep_prob(train), rng)
    if others is None:
        return new_train, None
    if isinstance(others, SpikeData):
        return new_train, thin(others, keep_prob(others), rng)
    return new_train, [thin(d, keep_prob(d), rng) for d in others]


def random_shift(data, s, rng):
    """"random_shift": s — per sample one integer channel shift = trunc toward zero of U(-s, s)
    (so 0 is twice as likely as any other value and +-s never occurs, spec §8 item 24); spikes
    shifted out of [0, n_channels) are dropped."""
    shifts = np.trunc(rng.uniform(-s, s, size=len(data))).astype(np.int64)
    sample = data.sample_index()
    channels = data.channels.astype(np.int64) + shifts[sample]
    return SpikeData.from_flat(sample, data.steps, channels, data.labels, data.n_steps,
                               data.n_channels)


def random_dilate(data, lo, hi, dt, rng):
    """"random_dilate": [lo, hi] — per sample a time factor f = exp(U(ln lo, ln hi)); every spike
    time t = step*dt becomes f*t, emitted at times_to_steps(f*t, dt) (spec §2.9); spikes with
    f*t >= T = n_steps*dt are dropped; duplicates collapse."""
    factors = np.exp(rng.uniform(np.log(lo), np.log(hi), size=len(data)))
    sample = data.sample_index()
    t = data.steps.astype(np.float64) * dt * factors[sample]
    inside = t < data.n_steps * dt
    return SpikeData.from_flat(sample[inside], times_to_steps(t[inside], dt),
                               data.channels[inside], data.labels, data.n_steps, data.n_channels)


def id_jitter(data, sigma, rng):
    """"ID_jitter": sigma — per spike a channel shift round(sigma * N(0, 1)) (round half to even,
    as numpy); spikes out of [0, n_channels) are dropped; duplicates collapse."""
    shifts = np.rint(sigma * rng.standard_normal(len(data.channels))).astype(np.int64)
    sample = data.sample_index()
    channels = data.channels.astype(np.int64) + shifts
    return SpikeData.from_flat(sample, data.steps, channels, data.labels, data.n_steps,
                               data.n_channels)


def blend(data, probs, n_total, rng, dt, speakers=None):
    """"blend": [p_1..p_K] (spec §5.3) — append n_total - len(data) synthetic samples to data.
    Each: pick a random anchor sample (it fixes label and speaker only); draw K samples of the
    anchor's class with replacement; shift sample i by round(group mean - own mean) channels and
    round(group mean - own mean) ms in time (means over its spikes, group mean = mean of the
    non-empty samples' means; empty samples are not shifted); keep each spike of sample i with
    probability p_i; merge; time shifts re-emitted with times_to_steps; spikes outside [0, T) or
    [0, n_channels) dropped, duplicate (channel, step) pairs collapse.

    Returns the extended SpikeData, or (SpikeData, extended speakers) when speakers is given."""
    probs = np.asarray(probs, dtype=np.float64)
    n_new = max(int(n_total) - len(data), 0)
    n_old = len(data)
    counts = data.spike_counts()
    sample_all = data.sample_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ch = np.bincount(sample_all, weights=data.channels, minlength=n_old) / counts
        mean_t = np.bincount(sample_all, weights=data.steps * dt, minlength=n_old) / counts
    members = {c: np.flatnonzero(data.labels == c) for c in np.unique(data.labels)}

    samples = [sample_all]
    steps = [data.steps.astype(np.int64)]
    channels = [data.channels.astype(np.int64)]
    labels = np.empty(n_old + n_new, dtype=np.int64)
    labels[:n_old] = data.labels
    anchors = np.empty(n_new, dtype=np.int64)
    for j in range(n_new):
        anchor = int(rng.integers(n_old))
        anchors[j] = anchor
        labels[n_old + j] = data.labels[anchor]
        group = rng.choice(members[data.labels[anchor]], size=len(probs), replace=True)
        full = counts[group] > 0
        if full.any():
            g_ch, g_t = mean_ch[group[full]].mean(), mean_t[group[full]].mean()
        for i, k in enumerate(group):
            if not full[i]:
                continue
            st, ch = data.sample(k)
            keep = rng.random(len(st)) < probs[i]
            d_ch = int(np.rint(g_ch - mean_ch[k]))
            d_t = float(np.rint(g_t - mean_t[k]))
            t = st[keep] * dt + d_t
            inside = t < data.n_steps * dt           # t >= T dropped; t < 0 gives steps < 0
            samples.append(np.full(int(inside.sum()), n_old + j, dtype=np.int64))
            steps.append(times_to_steps(t[inside], dt))
            channels.append(ch[keep][inside].astype(np.int64) + d_ch)
    out = SpikeData.from_flat(np.concatenate(samples), np.concatenate(steps),
                              np.concatenate(channels), labels, data.n_steps, data.n_channels)
    if speakers is None:
        return out
    speakers = np.asarray(speakers)
    return out, np.concatenate([speakers, speakers[anchors]])


def apply_augmentations(data, augmentation, dt, rng, n_train=None, speakers=None):
    """Apply the "random_shift", "random_dilate", "ID_jitter" and "blend" entries of the
    ``augmentation`` dict in its insertion order (spec §5.3 item 3); other keys (e.g.
    "NORMALISE_SPIKE_NUMBER", handled by ``normalise_spike_number``) are ignored. "blend" grows the
    set to ``n_train`` samples (required when "blend" is present).

    Returns the new SpikeData, or (SpikeData, speakers) when speakers is given (blend extends
    them; the other augmentations keep sample order)."""
    out = data
    for key, value in augmentation.items():
        if key == "random_shift":
            out = random_shift(out, value, rng)
        elif key == "random_dilate":
            out = random_dilate(out, value[0], value[1], dt, rng)
        elif key == "ID_jitter":
            out = id_jitter(out, value, rng)
        elif key == "blend":
            if n_train is None:
                raise ValueError("the 'blend' augmentation needs n_train")
            if speakers is None:
                out = blend(out, value, n_train, rng, dt)
            else:
                out, speakers = blend(out, value, n_train, rng, dt, speakers=speakers)
    if out is data:                                   # no augmentation: still a new object
        out = data.subset(np.arange(len(data)))
    if speakers is None:
        return out
    return out, np.array(speakers)


class DelayLine:
    """Input delay line (N_INPUT_DELAY = n_delay, INPUT_DELAY = delay_ms, spec §5.3) over a
    ``SpikeData``: n_delay + 1 copies of the inputs, copy d on channels c + d * n_channels and
    emitted at times_to_steps(t + d * delay_ms); delayed spikes at t >= T are lost. The copies are
    made per mini-batch (``batch``), so an epoch of SHD with 10 delays needs no 11-fold copy of
    the data set in memory; input dropout acts on each copy independently, as on separate input
    neurons."""

    def __init__(self, data, n_delay, delay_ms, dt):
        self.data = data
        self.shifts = times_to_steps(np.arange(int(n_delay) + 1) * float(delay_ms), dt)
        self.labels = data.labels
        self.n_steps = data.n_steps
        self.n_channels = len(self.shifts) * data.n_channels

    def __len__(self):
        return len(self.data)

    def batch(self, indices, p_drop=0.0, rng=None):
        return self.data.batch(indices, p_drop, rng, shifts=self.shifts)
