"""Input spike trains of a data set, stored by integer time step (never by comparing float times).

A ``SpikeData`` holds every sample's spikes as (step, channel) pairs sorted by step, packed in flat
arrays with per-sample offsets, plus the labels. ``batch`` packs the samples of one mini-batch into
the engine's layout: in_ch (flat channels) and in_ptr[b, n] = index of the first spike of sample b
at step n, so that the spikes of step n are in_ch[in_ptr[b, n]:in_ptr[b, n + 1]].
"""
import numpy as np
from numba import njit, prange


def times_to_steps(times_ms, dt):
    """First step whose start time is >= t (the input sources' emission rule)."""
    return np.ceil(np.asarray(times_ms, dtype=np.float64) / dt - 1e-6).astype(np.int64)


class SpikeData:
    """Spike trains of n samples on a grid of n_steps steps of dt, at most one spike per
    (channel, step)."""

    def __init__(self, steps, channels, offsets, labels, n_steps, n_channels):
        self.steps = np.asarray(steps, dtype=np.int32)
        self.channels = np.asarray(channels, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n_steps = int(n_steps)
        self.n_channels = int(n_channels)
        if len(self.offsets) != len(self.labels) + 1:
            raise ValueError("offsets must have one entry more than labels")
        if len(self.steps) != len(self.channels) or self.offsets[-1] != len(self.steps):
            raise ValueError("steps and channels must have offsets[-1] entries each")
        if self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must start at 0 and never decrease")
        s_min, s_max, c_min, c_max, ordered = _scan(self.offsets, self.steps, self.channels)
        if len(self.steps) and (s_min < 0 or s_max >= self.n_steps):
            raise ValueError(f"spike steps must lie in [0, {self.n_steps})")
        if len(self.channels) and (c_min < 0 or c_max >= self.n_channels):
            raise ValueError(f"spike channels must lie in [0, {self.n_channels})")
        if not ordered:
            self._sort_by_step()

    @classmethod
    def _unchecked(cls, steps, channels, offsets, labels, n_steps, n_channels):
        """A SpikeData from arrays that are valid and ordered by construction (int32 steps and
        channels, int64 offsets and labels, each sample's spikes ordered by (step, channel)):
        the results of the kernels here and in augmentations.py. Skips the constructor's checks,
        a pass over every spike."""
        data = cls.__new__(cls)
        data.steps, data.channels, data.offsets, data.labels = steps, channels, offsets, labels
        data.n_steps, data.n_channels = int(n_steps), int(n_channels)
        return data

    def arrays(self):
        """The data as named arrays (for ``np.savez``; ``from_arrays`` reads them back)."""
        return {"steps": self.steps, "channels": self.channels, "offsets": self.offsets,
                "labels": self.labels, "n_steps": np.array(self.n_steps),
                "n_channels": np.array(self.n_channels)}

    @classmethod
    def from_arrays(cls, z):
        """A SpikeData from the arrays ``arrays`` wrote (a mapping such as an open npz file)."""
        return cls(z["steps"], z["channels"], z["offsets"], z["labels"], int(z["n_steps"]),
                   int(z["n_channels"]))

    def _sort_by_step(self):
        """Order every sample's spikes by step, then channel (``batch`` relies on it); the
        constructor calls it only when some sample is out of that order."""
        order = np.lexsort((self.channels, self.steps, self.sample_index()))
        self.steps = self.steps[order]
        self.channels = self.channels[order]

    def __len__(self):
        return len(self.labels)

    @classmethod
    def from_flat(cls, sample, steps, channels, labels, n_steps, n_channels):
        """Build from flat per-spike arrays (sample index, step, channel) in any order:
        spikes outside [0, n_steps) x [0, n_channels) are dropped and a (channel, step) pair
        fires once per sample.

        The result is that of sorting the keys (sample, step, channel) of the kept spikes and
        dropping repeated keys (``np.unique``); it is computed sample by sample in O(spikes)
        (``_group_unique``)."""
        sample = np.asarray(sample, dtype=np.int64)
        steps = np.asarray(steps, dtype=np.int64)
        channels = np.asarray(channels, dtype=np.int64)
        labels = np.array(labels, dtype=np.int64)          # a copy: never alias the caller's
        if not len(sample) == len(steps) == len(channels):
            raise ValueError("sample, steps and channels must have the same length")
        out_steps, out_channels, offsets, bad = _group_unique(
            sample, steps, channels, len(labels), int(n_steps), int(n_channels))
        if bad:
            raise ValueError(f"sample indices of kept spikes must lie in [0, {len(labels)})")
        return cls._unchecked(out_steps, out_channels, offsets, labels, n_steps, n_channels)

    @classmethod
    def from_lists(cls, step_lists, channel_lists, labels, n_steps, n_channels):
        """Build from per-sample arrays of steps and channels (any order, duplicates allowed:
        spikes outside [0, n_steps) are dropped and a (channel, step) pair fires once)."""
        step_lists = [np.asarray(s, dtype=np.int64).ravel() for s in step_lists]
        channel_lists = [np.asarray(c, dtype=np.int64).ravel() for c in channel_lists]
        sample = np.repeat(np.arange(len(step_lists)), [len(s) for s in step_lists])
        empty = [np.zeros(0, dtype=np.int64)]
        return cls.from_flat(sample, np.concatenate(step_lists or empty),
                             np.concatenate(channel_lists or empty), labels, n_steps, n_channels)

    def sample_index(self):
        """Index of the sample every spike belongs to (aligned with ``steps``)."""
        return np.repeat(np.arange(len(self.labels), dtype=np.int64), np.diff(self.offsets))

    def subset(self, indices):
        """A new ``SpikeData`` with the samples ``indices`` (negative ones count from the end, as
        in numpy), in that order."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        n = len(self.labels)
        if len(indices) and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"sample indices must lie in [-{n}, {n})")
        indices = np.where(indices < 0, indices + n, indices)
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(np.diff(self.offsets)[indices], out=offsets[1:])
        steps, channels = empty_int32(offsets[-1]), empty_int32(offsets[-1])
        _take_samples(self.offsets, self.steps, self.channels, indices, offsets, steps, channels)
        return SpikeData._unchecked(steps, channels, offsets, self.labels[indices], self.n_steps,
                                    self.n_channels)

    def sample(self, i):
        """(steps, channels) of sample i."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.steps[a:b], self.channels[a:b]

    def spike_counts(self):
        return np.diff(self.offsets)

    def batch(self, indices, p_drop=0.0, rng=None, shifts=(0,)):
        """Engine layout (in_ptr, in_ch) of the samples ``indices``.

        ``shifts`` (steps) makes len(shifts) copies of every spike, copy d on channel
        c + d * n_channels at step + shifts[d] (an input delay line; spikes that fall at or after
        the end are lost). With p_drop > 0 each (copied) input spike is deleted with that
        probability (input dropout)."""
        indices = np.asarray(indices, dtype=np.int64)
        shifts = np.asarray(shifts, dtype=np.int64)
        n_candidates = int(np.diff(self.offsets)[indices].sum()) * len(shifts)
        u = rng.random(n_candidates) if p_drop > 0.0 else np.zeros(0)
        return _pack_batch(self.offsets, self.steps, self.channels, indices, shifts,
                           self.n_channels, self.n_steps, u, p_drop)


@njit(cache=True, parallel=True)
def _pack_batch(offsets, steps, channels, indices, shifts, n_channels, n_steps, u, p_drop):
    """Counting sort of the batch's spikes (and their delayed copies) by step, in parallel over
    the samples; u holds one uniform number per candidate spike when dropping (empty
    otherwise), candidates numbered sample by sample."""
    B, D = len(indices), len(shifts)
    in_ptr = np.zeros((B, n_steps + 1), dtype=np.int64)
    drop = len(u) > 0
    first_k = np.zeros(B + 1, dtype=np.int64)     # number of the sample's first candidate
    for b in range(B):
        i = indices[b]
        first_k[b + 1] = first_k[b] + (offsets[i + 1] - offsets[i]) * D
    for b in prange(B):                       # pass 1: spikes per (sample, step)
        i = indices[b]
        k = first_k[b]
        for j in range(offsets[i], offsets[i + 1]):
            for d in range(D):
                s = steps[j] + shifts[d]
                if s < n_steps and not (drop and u[k] < p_drop):
                    in_ptr[b, s + 1] += 1
                k += 1
    for b in prange(B):                       # running sums within each sample ...
        for n in range(n_steps):
            in_ptr[b, n + 1] += in_ptr[b, n]
    base = np.zeros(B + 1, dtype=np.int64)    # ... and where each sample starts
    for b in range(B):
        base[b + 1] = base[b] + in_ptr[b, n_steps]
    for b in prange(B):
        for n in range(n_steps + 1):
            in_ptr[b, n] += base[b]
    in_ch = np.empty(base[B], dtype=np.int32)
    for b in prange(B):                       # pass 2: fill, same decisions as pass 1
        i = indices[b]
        k = first_k[b]
        pos = in_ptr[b, :n_steps].copy()
        for j in range(offsets[i], offsets[i + 1]):
            for d in range(D):
                s = steps[j] + shifts[d]
                if s < n_steps and not (drop and u[k] < p_drop):
                    in_ch[pos[s]] = channels[j] + d * n_channels
                    pos[s] += 1
                k += 1
    return in_ptr, in_ch


@njit(cache=True)
def empty_int32(n):
    """``np.empty(n, np.int32)``, allocated by numba (plain ``malloc``). numpy advises the kernel
    to back large arrays with huge pages; where transparent huge pages are set to defragment on
    that advice ("madvise"), the first touch of such an array can take several times longer
    (4x for 500 MB on the machine of BENCHMARKS.md), and the data pipeline fills fresh arrays
    of hundreds of MB every epoch."""
    return np.empty(n, dtype=np.int32)


@njit(cache=True)
def empty_float64(n):
    """``np.empty(n)``, allocated by numba (see ``empty_int32``)."""
    return np.empty(n, dtype=np.float64)


@njit(cache=True)
def _scan(offsets, steps, channels):
    """(smallest step, largest step, smallest channel, largest channel, whether every sample's
    spikes are ordered by (step, channel)) in one pass."""
    if len(steps) == 0:
        return 0, 0, 0, 0, True
    s_min = s_max = steps[0]
    c_min = c_max = channels[0]
    ordered = True
    for i in range(len(offsets) - 1):
        for j in range(offsets[i], offsets[i + 1]):
            s, c = steps[j], channels[j]
            s_min, s_max = min(s_min, s), max(s_max, s)
            c_min, c_max = min(c_min, c), max(c_max, c)
            if j > offsets[i] and (s < steps[j - 1] or (s == steps[j - 1] and c < channels[j - 1])):
                ordered = False
    return s_min, s_max, c_min, c_max, ordered


@njit(cache=True)
def _take_samples(offsets, steps, channels, indices, new_offsets, out_steps, out_channels):
    """Copy the spikes of the samples ``indices`` (valid, non-negative) to out_steps,
    out_channels at new_offsets."""
    for b in range(len(indices)):
        i = indices[b]
        a, n = new_offsets[b], offsets[i + 1] - offsets[i]
        out_steps[a:a + n] = steps[offsets[i]:offsets[i + 1]]
        out_channels[a:a + n] = channels[offsets[i]:offsets[i + 1]]


@njit(cache=True)
def _sort_unique_segment(steps, channels, a, b, n_steps, n_channels, count, buf_s, buf_c):
    """Sort the spikes [a, b) of ``steps``/``channels`` by (step, channel) in place and drop
    repeated pairs; returns the new end (<= b). ``count`` (n_steps + 1 integers) and ``buf_s``,
    ``buf_c`` (at least b - a entries) are scratch space. Steps and channels must be in range.

    Already ordered spikes are only de-duplicated; spikes ordered by step are sorted by channel
    within each step; others are first put in step order, by a counting sort when n_steps is
    not much larger than the number of spikes, by sorting the keys step * n_channels + channel
    otherwise."""
    if b - a < 2:
        return b
    by_step, ordered = True, True
    for j in range(a + 1, b):
        if steps[j] < steps[j - 1]:
            by_step = ordered = False
            break
        if steps[j] == steps[j - 1] and channels[j] < channels[j - 1]:
            ordered = False
    if not by_step:
        if n_steps <= 4 * (b - a) + 64:               # stable counting sort by step
            count[:n_steps + 1] = 0
            for j in range(a, b):
                count[steps[j] + 1] += 1
            for n in range(n_steps):
                count[n + 1] += count[n]
            for j in range(a, b):
                k = count[steps[j]]
                buf_s[k] = steps[j]
                buf_c[k] = channels[j]
                count[steps[j]] = k + 1
            for k in range(b - a):
                steps[a + k] = buf_s[k]
                channels[a + k] = buf_c[k]
        else:                                         # sort the keys: fully ordered after
            keys = np.empty(b - a, dtype=np.int64)
            for j in range(a, b):
                keys[j - a] = np.int64(steps[j]) * n_channels + channels[j]
            keys.sort()
            for k in range(b - a):
                steps[a + k] = keys[k] // n_channels
                channels[a + k] = keys[k] % n_channels
            ordered = True
    if not ordered:                                   # channel order within every step
        g = a
        while g < b:
            h = g + 1
            while h < b and steps[h] == steps[g]:
                h += 1
            if h - g > 32:
                channels[g:h] = np.sort(channels[g:h])
            else:
                for j in range(g + 1, h):             # insertion sort of a small group
                    c = channels[j]
                    k = j - 1
                    while k >= g and channels[k] > c:
                        channels[k + 1] = channels[k]
                        k -= 1
                    channels[k + 1] = c
            g = h
    w = a + 1                                         # drop repeated (step, channel) pairs
    for j in range(a + 1, b):
        if steps[j] != steps[w - 1] or channels[j] != channels[w - 1]:
            steps[w] = steps[j]
            channels[w] = channels[j]
            w += 1
    return w


@njit(cache=True)
def _group_unique(sample, steps, channels, n_samples, n_steps, n_channels):
    """``from_flat``: keep the spikes inside the grid, group them by sample (stable counting
    sort), then sort and de-duplicate every sample. Returns (steps, channels, offsets, bad) with
    bad = a kept spike names a sample outside [0, n_samples)."""
    counts = np.zeros(n_samples + 1, dtype=np.int64)
    for j in range(len(sample)):
        s, c = steps[j], channels[j]
        if 0 <= s < n_steps and 0 <= c < n_channels:
            i = sample[j]
            if i < 0 or i >= n_samples:
                return (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32),
                        np.zeros(n_samples + 1, dtype=np.int64), True)
            counts[i + 1] += 1
    largest = 0
    for i in range(n_samples):
        largest = max(largest, counts[i + 1])
        counts[i + 1] += counts[i]
    out_steps = np.empty(counts[-1], dtype=np.int32)
    out_channels = np.empty(counts[-1], dtype=np.int32)
    fill = counts[:-1].copy()
    for j in range(len(sample)):
        s, c = steps[j], channels[j]
        if 0 <= s < n_steps and 0 <= c < n_channels:
            i = sample[j]
            out_steps[fill[i]] = s
            out_channels[fill[i]] = c
            fill[i] += 1
    offsets = np.zeros(n_samples + 1, dtype=np.int64)
    count = np.empty(n_steps + 1, dtype=np.int64)
    buf_s = np.empty(largest, dtype=np.int32)
    buf_c = np.empty(largest, dtype=np.int32)
    w = 0
    for i in range(n_samples):
        a = counts[i]
        end = _sort_unique_segment(out_steps, out_channels, a, counts[i + 1], n_steps,
                                   n_channels, count, buf_s, buf_c)
        for j in range(a, end):                      # close the gaps left by duplicates
            out_steps[w + j - a] = out_steps[j]
            out_channels[w + j - a] = out_channels[j]
        w += end - a
        offsets[i + 1] = w
    return out_steps[:w], out_channels[:w], offsets, False
