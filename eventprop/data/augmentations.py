"""Per-epoch manipulations of SHD/SSC spike data: class balancing, spike-number
normalisation, the four augmentations of the ``AUGMENTATION`` dict and the input delay line.

Every function takes a ``SpikeData`` and returns a NEW one (the input is never modified; with no
augmentation at all, ``apply_augmentations`` returns one that shares the input's spike arrays,
read-only). Spikes
live on the integer step grid; where an operation moves a spike in time, the new time
t = step * dt (ms) is converted back with the input sources' emission rule ``times_to_steps``
(first step whose start time is >= t). Spikes that leave [0, n_steps) or
[0, n_channels) are dropped and duplicate (channel, step) pairs of a sample collapse into one
spike, as they would at the input population.
"""
import numpy as np
from numba import njit

from eventprop.data.spikes import SpikeData, empty_float64, empty_int32, times_to_steps

AUGMENTATION_KEYS = ("random_shift", "random_dilate", "ID_jitter", "blend")

# blend's first guess at its output size: old spikes + factor * expected new spikes + one new
# sample + slack (it grows the output when a sample does not fit)
_BLEND_ROOM = (1.1, 1024)


def balance_classes(data, rng):
    """Indices (ascending) of a random subsample with every class cut down to the smallest class
    count (BALANCE_TRAIN/EVAL_CLASSES). Use ``data.subset(idx)`` (and
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
    """NORMALISE_SPIKE_NUMBER: n_min = smallest spike count among the training
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
    (so 0 is twice as likely as any other value and +-s never occurs); spikes
    shifted out of [0, n_channels) are dropped.

    A shift keeps every sample's (step, channel) order, so the result is a filtered copy
    (``_copy_shifted``), the same as ``SpikeData.from_flat`` of the shifted spikes."""
    return _shifted(data, _channel_shifts(len(data), s, rng))


def _channel_shifts(n, s, rng):
    """The per-sample shifts of ``random_shift`` (its only random numbers)."""
    return np.trunc(rng.uniform(-s, s, size=n)).astype(np.int64)


def _shifted(data, shifts):
    """``data`` with the channels of sample i moved by shifts[i] (``random_shift``)."""
    steps, channels = empty_int32(len(data.steps)), empty_int32(len(data.steps))
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    unused = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    n = _copy_shifted(data.offsets, data.steps, data.channels, shifts, data.n_channels, steps,
                      channels, offsets[1:], False, 1.0, False, *unused)
    np.cumsum(offsets, out=offsets)
    return SpikeData._unchecked(steps[:n], channels[:n], offsets, data.labels.copy(),
                                data.n_steps, data.n_channels)


def random_dilate(data, lo, hi, dt, rng):
    """"random_dilate": [lo, hi] — per sample a time factor f = exp(U(ln lo, ln hi)); every spike
    time t = step*dt becomes f*t, emitted at times_to_steps(f*t, dt); spikes with
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
    """"blend": [p_1..p_K] — append n_total - len(data) synthetic samples to data.
    Each: pick a random anchor sample (it fixes label and speaker only); draw K samples of the
    anchor's class with replacement; shift sample i by round(group mean - own mean) channels and
    round(group mean - own mean) ms in time (means over its spikes, group mean = mean of the
    non-empty samples' means; empty samples are not shifted); keep each spike of sample i with
    probability p_i; merge; time shifts re-emitted with times_to_steps; spikes outside [0, T) or
    [0, n_channels) dropped, duplicate (channel, step) pairs collapse.

    Random numbers, per new sample in turn: the anchor (``rng.integers``), the group
    (``rng.choice``), then one uniform number per spike of each non-empty group member, in member
    order (``rng.random``).

    Returns the extended SpikeData, or (SpikeData, extended speakers) when speakers is given."""
    return _blend(data, probs, n_total, rng, dt, speakers)


def _blend(data, probs, n_total, rng, dt, speakers=None, shifts=None, buffer_size=1 << 22):
    """``blend`` of ``data``, or with ``shifts`` of ``_shifted(data, shifts)`` (the result of
    ``random_shift`` then ``blend``) without building that intermediate set.

    The random numbers are drawn here, those of the spikes into a buffer of ``buffer_size``
    numbers; ``_blend_into`` builds the new samples drawn so far whenever it is full."""
    probs = np.asarray(probs, dtype=np.float64)
    n_new = max(int(n_total) - len(data), 0)
    n_old = len(data)
    k_members = len(probs)
    moved = shifts is not None
    shifts = np.zeros(n_old, dtype=np.int64) if shifts is None else shifts
    # the output: the old samples (copied, or shifted), then the new ones; room for the expected
    # size (pages never written cost nothing)
    largest = k_members * int(np.diff(data.offsets).max(initial=0))   # most spikes of a group
    mean_count = len(data.steps) / n_old if n_old else 0.0
    factor, slack = _BLEND_ROOM
    room = len(data.steps) + int(factor * n_new * float(probs.sum()) * mean_count) + largest + slack
    out = [empty_int32(room), empty_int32(room)]
    sample_counts = np.empty(n_old + n_new, dtype=np.int64)
    counts = np.empty(n_old, dtype=np.int64)            # spikes per sample of the set to blend
    sum_ch, sum_t = np.zeros(n_old), np.zeros(n_old)
    w = _copy_shifted(data.offsets, data.steps, data.channels, shifts, data.n_channels, out[0],
                      out[1], sample_counts, True, float(dt), moved, counts, sum_ch, sum_t)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ch = sum_ch / counts
        mean_t = sum_t / counts
    members = {c: np.flatnonzero(data.labels == c) for c in np.unique(data.labels)}
    old_labels = data.labels.tolist()
    labels = np.empty(n_old + n_new, dtype=np.int64)
    labels[:n_old] = data.labels
    anchors = np.empty(n_new, dtype=np.int64)

    u = empty_float64(max(int(buffer_size), largest))
    max_rows = 1024
    groups = np.zeros((max_rows, k_members), dtype=np.int64)
    used = np.zeros((max_rows, k_members), dtype=np.bool_)
    d_ch = np.zeros((max_rows, k_members), dtype=np.int64)
    d_t = np.zeros((max_rows, k_members), dtype=np.float64)
    scratch = [np.empty(largest, dtype=np.int64) for _ in range(3)]
    j = 0
    while j < n_new:
        rows, k = 0, 0
        used[:] = False
        while j + rows < n_new and rows < max_rows and k + largest <= len(u):
            anchor = int(rng.integers(n_old))
            label = old_labels[anchor]
            anchors[j + rows] = anchor
            labels[n_old + j + rows] = label
            group = rng.choice(members[label], size=k_members, replace=True)
            full = counts[group] > 0
            if full.any():
                chosen = group[full]
                g_ch, g_t = mean_ch[chosen].mean(), mean_t[chosen].mean()
                groups[rows] = group
                used[rows] = full
                d_ch[rows, full] = np.rint(g_ch - mean_ch[chosen])
                d_t[rows, full] = np.rint(g_t - mean_t[chosen])
                n = int(counts[chosen].sum())
                rng.random(out=u[k:k + n])           # the same numbers as one call per member
                k += n
            rows += 1
        row, k = 0, 0
        while row < rows:
            w, row, k = _blend_into(data.offsets, data.steps, data.channels, shifts, moved,
                                    groups, used, d_ch, d_t, probs, u, row, rows, k, float(dt),
                                    data.n_steps * dt, data.n_steps, data.n_channels, out[0],
                                    out[1], w, sample_counts[n_old + j:], *scratch)
            if row < rows:                          # out of room: grow the output
                grown = [empty_int32(2 * len(out[0])), empty_int32(2 * len(out[0]))]
                for old, new in zip(out, grown):
                    new[:w] = old[:w]
                out = grown
        j += rows
    offsets = np.zeros(n_old + n_new + 1, dtype=np.int64)
    np.cumsum(sample_counts, out=offsets[1:])
    out = SpikeData._unchecked(out[0][:w], out[1][:w], offsets, labels, data.n_steps,
                               data.n_channels)
    if speakers is None:
        return out
    speakers = np.asarray(speakers)
    return out, np.concatenate([speakers, speakers[anchors]])


def apply_augmentations(data, augmentation, dt, rng, n_train=None, speakers=None):
    """Apply the "random_shift", "random_dilate", "ID_jitter" and "blend" entries of the
    ``augmentation`` dict in its insertion order; other keys (e.g.
    "NORMALISE_SPIKE_NUMBER", handled by ``normalise_spike_number``) are ignored. "blend" grows the
    set to ``n_train`` samples (required when "blend" is present).

    Returns the new SpikeData, or (SpikeData, speakers) when speakers is given (blend extends
    them; the other augmentations keep sample order). Without any of the four augmentations the
    new SpikeData shares the spike arrays of ``data`` (as read-only views). "random_shift"
    directly followed by "blend" gives the result of the two in turn, without building the
    shifted set."""
    todo = [(key, value) for key, value in augmentation.items() if key in AUGMENTATION_KEYS]
    out = data
    i = 0
    while i < len(todo):
        key, value = todo[i]
        if key == "random_shift":
            shifts = _channel_shifts(len(out), value, rng)
            if i + 1 < len(todo) and todo[i + 1][0] == "blend":
                i += 1
                out, speakers = _blend_step(out, todo[i][1], n_train, rng, dt, speakers, shifts)
            else:
                out = _shifted(out, shifts)
        elif key == "random_dilate":
            out = random_dilate(out, value[0], value[1], dt, rng)
        elif key == "ID_jitter":
            out = id_jitter(out, value, rng)
        elif key == "blend":
            out, speakers = _blend_step(out, value, n_train, rng, dt, speakers)
        i += 1
    if out is data:                                   # no augmentation: still a new object
        shared = [a.view() for a in (data.steps, data.channels, data.offsets)]
        for a in shared:
            a.flags.writeable = False
        out = SpikeData._unchecked(*shared, data.labels.copy(), data.n_steps, data.n_channels)
    if speakers is None:
        return out
    return out, np.array(speakers)


def _blend_step(data, probs, n_train, rng, dt, speakers, shifts=None):
    """(blended set, speakers or None) for ``apply_augmentations``."""
    if n_train is None:
        raise ValueError("the 'blend' augmentation needs n_train")
    out = _blend(data, probs, n_train, rng, dt, speakers, shifts)
    return out if speakers is not None else (out, None)


class DelayLine:
    """Input delay line (N_INPUT_DELAY = n_delay, INPUT_DELAY = delay_ms) over a
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


# --- compiled kernels -----------------------------------------------------------------------------
@njit(cache=True)
def _copy_shifted(offsets, steps, channels, shifts, n_channels, out_steps, out_channels,
                  out_counts, stats, dt, dedupe_stats, counts, sum_ch, sum_t):
    """Write every sample i with its channels moved by shifts[i] to out_steps, out_channels
    (from index 0; out_counts[i] = spikes of sample i written): spikes that leave
    [0, n_channels) are dropped and a repeated (step, channel) pair is written once (every
    sample's spikes being ordered by (step, channel), so are the moved ones, and repeats are
    neighbours). Returns the number of spikes written.

    With ``stats`` also the statistics ``blend`` needs of its input, per sample in spike order:
    the number of spikes, the sum of the channels and the sum of step * dt (as
    ``np.bincount(sample, weights)`` adds them), of the moved spikes in range, all of them
    (``dedupe_stats`` False: a blend of the unshifted set, whose members are read as they are)
    or those written (True: the set that ``random_shift`` would have built)."""
    w = 0
    for i in range(len(offsets) - 1):
        first = w
        d = shifts[i]
        last_s, last_c = -1, -1
        n, s_ch, s_t = 0, 0.0, 0.0
        for j in range(offsets[i], offsets[i + 1]):
            s = steps[j]
            c = channels[j] + d
            inside = (c >= 0) & (c < n_channels)
            keep = inside & ((s != last_s) | (c != last_c))
            out_steps[w] = s                  # written always, kept by moving on (no branch)
            out_channels[w] = c
            w += keep
            last_s = s if keep else last_s
            last_c = c if keep else last_c
            if stats and (keep if dedupe_stats else inside):
                n += 1
                s_ch += np.float64(c)
                s_t += np.float64(s) * dt
        out_counts[i] = w - first
        if stats:
            counts[i], sum_ch[i], sum_t[i] = n, s_ch, s_t
    return w


@njit(cache=True)
def _blend_into(offsets, steps, channels, shifts, dedupe, groups, used, d_ch, d_t, probs, u, row,
                rows, k, dt, t_end, n_steps, n_channels, out_steps, out_channels, w, counts, keys,
                merged, spare):
    """Blended samples ``row`` .. ``rows - 1``: sample r merges the members groups[r, i] with
    used[r, i] (the non-empty ones), shifted by d_ch[r, i] channels and d_t[r, i] ms, each spike
    kept when its uniform number (u[k], u[k + 1], ..., one per spike of every used member, in
    order) is below probs[i]. Writes the spikes of sample r from out_steps[w] on, sorted and
    without repeats, and their number to counts[r]. Stops before a sample that might not fit.
    Returns (w, row, k) after the last sample written. ``keys``, ``merged``, ``spare``: scratch
    space for the spikes of one new sample.

    The members are read as ``_copy_shifted`` sees them: channels moved by ``shifts`` first,
    spikes out of range skipped, and with ``dedupe`` repeated pairs skipped (no uniform number
    is used for a skipped spike).

    A member's kept spikes are keys (step << 32) | channel; they come out in order (the time
    shift is monotonic, the channel shift constant), unless two steps fall into one, which is
    checked. Ordered members are merged, others sorted."""
    k_members = groups.shape[1]
    bounds = np.zeros(k_members + 1, dtype=np.int64)
    while row < rows:
        n = 0
        for i in range(k_members):
            if used[row, i]:
                n += offsets[groups[row, i] + 1] - offsets[groups[row, i]]
        if w + n > len(out_steps):
            break
        m, runs, ordered = 0, 0, True
        for i in range(k_members):
            if not used[row, i]:
                continue
            src = groups[row, i]
            p, move, shift_c, shift_t = probs[i], shifts[src], d_ch[row, i], d_t[row, i]
            last_step, s, inside, prev = -1, np.int64(-1), False, np.int64(-1)
            last_c0 = np.int64(-1)
            for j in range(offsets[src], offsets[src + 1]):
                c0 = np.int64(channels[j]) + move              # the member's own spike
                if c0 < 0 or c0 >= n_channels or (dedupe and steps[j] == last_step
                                                  and c0 == last_c0):
                    continue
                last_c0 = c0
                if steps[j] != last_step:        # the new step depends on the old step only
                    last_step = steps[j]
                    t = np.float64(last_step) * dt + shift_t
                    s = np.int64(np.ceil(t / dt - 1e-6))   # times_to_steps
                    inside = (t < t_end) & (s >= 0) & (s < n_steps)
                c = c0 + shift_c
                keep = (u[k] < p) & inside & (c >= 0) & (c < n_channels)
                k += 1
                key = (s << 32) | (c & 0xFFFFFFFF)
                keys[m] = key                     # written always, kept by moving on
                m += keep
                ordered &= (not keep) | (key >= prev)
                prev = key if keep else prev
            runs += 1
            bounds[runs] = m
        # one ordered list of keys: a single member's, merged ones, or sorted ones
        source = keys
        if not ordered:
            source = np.sort(keys[:m])
        elif runs > 1:
            source = _merge_runs(keys, bounds, runs, merged, spare)
        a = w
        last = np.int64(-1)
        for q in range(m):                        # decode, dropping repeats
            key = source[q]
            out_steps[w] = key >> 32
            out_channels[w] = key & 0xFFFFFFFF
            w += key != last
            last = key
        counts[row] = w - a
        row += 1
    return w, row, k


@njit(cache=True)
def _merge_runs(keys, bounds, runs, buf_a, buf_b):
    """Merge the ordered runs keys[bounds[r]:bounds[r + 1]] (r < runs) one after the other,
    alternating between buf_a and buf_b; returns the buffer with all bounds[runs] keys in
    order."""
    src, dst = keys, buf_a
    n = bounds[1]
    for r in range(1, runs):
        if r == 1:
            src_a, a_end = keys, bounds[1]
        else:
            src_a, a_end = src, n
        i, j, jend, q = 0, bounds[r], bounds[r + 1], 0
        while i < a_end and j < jend:             # merge step without a branch on the order
            ka, kb = src_a[i], keys[j]
            take_a = ka <= kb
            dst[q] = ka if take_a else kb
            i += take_a
            j += not take_a
            q += 1
        while i < a_end:
            dst[q] = src_a[i]
            i += 1
            q += 1
        while j < jend:
            dst[q] = keys[j]
            j += 1
            q += 1
        n = q
        src = dst
        dst = buf_b if r % 2 == 1 else buf_a
    return src


def check_classes_present(labels, classes, source):
    """ValueError naming the first of ``classes`` (REDUCED_CLASSES; None: nothing to check) that
    has no sample among ``labels``, the labels of ``source`` (a file or folder)."""
    if classes is None:
        return
    present = np.unique(labels)
    missing = [c for c in classes if c not in present]
    if missing:
        raise ValueError(f"invalid p['REDUCED_CLASSES'] = {list(classes)}: class {missing[0]} "
                         f"has no samples in {source} (its classes: "
                         f"{', '.join(str(c) for c in present)})")


def reduce_classes(data, speakers, classes):
    """Keep the samples of ``classes`` and relabel them 0, 1, ... in the order of the list."""
    if classes is None:
        return data, speakers
    lookup = np.full(max(int(data.labels.max(initial=0)), max(classes)) + 1, -1, dtype=np.int64)
    lookup[list(classes)] = np.arange(len(classes))
    keep = np.flatnonzero(lookup[data.labels] >= 0)
    out = data.subset(keep)
    out.labels = lookup[out.labels]
    return out, (speakers[keep] if speakers is not None else None)
