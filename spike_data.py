"""Input spike trains of a data set, stored by integer time step (never by comparing float times).

A ``SpikeData`` holds every sample's spikes as (step, channel) pairs sorted by step, packed in flat
arrays with per-sample offsets, plus the labels. ``batch`` packs the samples of one mini-batch into
the engine's layout: in_ch (flat channels) and in_ptr[b, n] = index of the first spike of sample b
at step n, so that the spikes of step n are in_ch[in_ptr[b, n]:in_ptr[b, n + 1]].
"""
import numpy as np


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
        sample = np.repeat(np.arange(len(self.labels)), np.diff(self.offsets))
        order = np.lexsort((self.channels, self.steps, sample))
        self.steps = self.steps[order]
        self.channels = self.channels[order]

    def __len__(self):
        return len(self.labels)

    @classmethod
    def from_lists(cls, step_lists, channel_lists, labels, n_steps, n_channels):
        """Build from per-sample arrays of steps and channels (any order, duplicates allowed:
        spikes outside [0, n_steps) are dropped and a (channel, step) pair fires once)."""
        steps, channels, offsets = [], [], [0]
        for s, c in zip(step_lists, channel_lists):
            s = np.asarray(s, dtype=np.int64)
            c = np.asarray(c, dtype=np.int64)
            keep = (s >= 0) & (s < n_steps) & (c >= 0) & (c < n_channels)
            key = np.unique(s[keep] * n_channels + c[keep])   # sorted by step, then channel
            steps.append(key // n_channels)
            channels.append(key % n_channels)
            offsets.append(offsets[-1] + len(key))
        return cls(np.concatenate(steps) if steps else [], np.concatenate(channels) if channels
                   else [], offsets, labels, n_steps, n_channels)

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

    def batch(self, indices, p_drop=0.0, rng=None):
        """Engine layout (in_ptr, in_ch) of the samples ``indices``; with p_drop > 0 each input
        spike is deleted with that probability (input dropout, spec §2.3)."""
        n_steps = self.n_steps
        in_ptr = np.empty((len(indices), n_steps + 1), dtype=np.int64)
        chunks = []
        base = 0
        grid = np.arange(n_steps + 1)
        for b, i in enumerate(indices):
            steps, channels = self.sample(i)
            if p_drop > 0.0:
                keep = rng.random(len(steps)) >= p_drop
                steps, channels = steps[keep], channels[keep]
            in_ptr[b] = base + np.searchsorted(steps, grid, side="left")
            chunks.append(channels)
            base += len(channels)
        in_ch = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, np.int32)
        return in_ptr, in_ch
