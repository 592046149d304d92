"""Input spike trains of a data set, stored by integer time step (never by comparing float times).

A ``SpikeData`` holds every sample's spikes as (step, channel) pairs sorted by step, packed in flat
arrays with per-sample offsets, plus the labels. ``batch`` packs the samples of one mini-batch into
the engine's layout: in_ch (flat channels) and in_ptr[b, n] = index of the first spike of sample b
at step n, so that the spikes of step n are in_ch[in_ptr[b, n]:in_ptr[b, n + 1]].
"""
import numpy as np
from numba import njit


def times_to_steps(times_ms, dt):
    """First step whose start time is >= t (the input sources' emission rule, spec §2.9)."""
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
        if len(self.steps) and (self.steps.min() < 0 or self.steps.max() >= self.n_steps):
            raise ValueError(f"spike steps must lie in [0, {self.n_steps})")
        if len(self.channels) and (self.channels.min() < 0
                                   or self.channels.max() >= self.n_channels):
            raise ValueError(f"spike channels must lie in [0, {self.n_channels})")
        self._sort_by_step()

    def _sort_by_step(self):
        """Order every sample's spikes by step, then channel (``batch`` relies on it)."""
        order = np.lexsort((self.channels, self.steps, self.sample_index()))
        self.steps = self.steps[order]
        self.channels = self.channels[order]

    def __len__(self):
        return len(self.labels)

    @classmethod
    def from_flat(cls, sample, steps, channels, labels, n_steps, n_channels):
        """Build from flat per-spike arrays (sample index, step, channel) in any order:
        spikes outside [0, n_steps) x [0, n_channels) are dropped and a (channel, step) pair
        fires once per sample."""
        sample = np.asarray(sample, dtype=np.int64)
        steps = np.asarray(steps, dtype=np.int64)
        channels = np.asarray(channels, dtype=np.int64)
        labels = np.array(labels, dtype=np.int64)          # a copy: never alias the caller's
        keep = (steps >= 0) & (steps < n_steps) & (channels >= 0) & (channels < n_channels)
        per_sample = np.int64(n_steps) * n_channels
        key = np.unique(sample[keep] * per_sample + steps[keep] * n_channels + channels[keep])
        counts = np.bincount(key // per_sample, minlength=len(labels))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        rest = key % per_sample
        return cls(rest // n_channels, rest % n_channels, offsets, labels, n_steps, n_channels)

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
        """A new ``SpikeData`` with the samples ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        counts = np.diff(self.offsets)[indices]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        take = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices]) \
            if len(indices) else np.zeros(0, dtype=np.int64)
        return SpikeData(self.steps[take], self.channels[take], offsets, self.labels[indices],
                         self.n_steps, self.n_channels)

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
        probability (input dropout, spec §2.3)."""
        indices = np.asarray(indices, dtype=np.int64)
        shifts = np.asarray(shifts, dtype=np.int64)
        n_candidates = int(np.diff(self.offsets)[indices].sum()) * len(shifts)
        u = rng.random(n_candidates) if p_drop > 0.0 else np.zeros(0)
        return _pack_batch(self.offsets, self.steps, self.channels, indices, shifts,
                           self.n_channels, self.n_steps, u, p_drop)


@njit(cache=True)
def _pack_batch(offsets, steps, channels, indices, shifts, n_channels, n_steps, u, p_drop):
    """Counting sort of the batch's spikes (and their delayed copies) by step; u holds one uniform
    number per candidate spike when dropping (empty otherwise)."""
    B, D = len(indices), len(shifts)
    in_ptr = np.zeros((B, n_steps + 1), dtype=np.int64)
    drop = len(u) > 0
    k = 0
    for b in range(B):                        # pass 1: spikes per (sample, step)
        i = indices[b]
        for j in range(offsets[i], offsets[i + 1]):
            for d in range(D):
                s = steps[j] + shifts[d]
                if s < n_steps and not (drop and u[k] < p_drop):
                    in_ptr[b, s + 1] += 1
                k += 1
    base = 0
    for b in range(B):                        # running sums -> first index of every step
        in_ptr[b, 0] = base
        for n in range(n_steps):
            in_ptr[b, n + 1] += in_ptr[b, n]
        base = in_ptr[b, n_steps]
    in_ch = np.empty(base, dtype=np.int32)
    k = 0
    for b in range(B):                        # pass 2: fill, same decisions as pass 1
        i = indices[b]
        pos = in_ptr[b, :n_steps].copy()
        for j in range(offsets[i], offsets[i + 1]):
            for d in range(D):
                s = steps[j] + shifts[d]
                if s < n_steps and not (drop and u[k] < p_drop):
                    in_ch[pos[s]] = channels[j] + d * n_channels
                    pos[s] += 1
                k += 1
    return in_ptr, in_ch
