"""MNIST: reading the official IDX files, and the two input encodings of the MNIST simulators.

The files (LeCun, Cortes & Burges) are, in ``DATA_DIR/MNIST/``, plain or gzipped:

    train-images-idx3-ubyte   train-labels-idx1-ubyte   (60000 images and labels)
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte    (10000)

An IDX file starts with a big-endian 32-bit magic number, 0x00000803 for the images (unsigned
bytes, 3 dimensions) and 0x00000801 for the labels (unsigned bytes, 1 dimension), then one
big-endian 32-bit size per dimension, then the data. The ``mnist`` package's ``parse_idx`` reads
them. Nothing is downloaded unless asked: ``load_split(..., download=True)`` fetches a missing file
with ``mnist.download_file`` where the machine is online.

Encodings, both per mini-batch from the stored images (``ImageSpikes``), so that no spike copy of
the data set is kept in memory:

* MNIST (``mnist_step_table``): input neuron i = pixel i (row-major). A pixel of grey value
  g <= 1 is silent; any other fires once at t = 2 dt + (255 - g) / 255 (T - 4 dt), emitted at
  ``times_to_steps(t, dt)`` (bright pixels early).
* Sequential MNIST (``smnist_events``): threshold crossings of a sequence of pixel values, see
  ``smnist_events``.
"""
import gzip
import io
import os
import shutil
import struct
import tempfile

import mnist
import numpy as np
from numba import njit

from eventprop.data.spikes import SpikeData, times_to_steps

SOURCE_URL = "http://yann.lecun.com/exdb/mnist/"
MIRROR_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MAGIC = {"images": 0x00000803, "labels": 0x00000801}
N_CLASSES = 10
SIDE = 28
N_PIXELS = SIDE * SIDE

# Sequential MNIST: 49 thresholds equally spaced over 0..254, an "up" and a "down" neuron each,
# and one neuron for the value 255: 99 input neurons per sequence.
THRESHOLDS = np.linspace(0.0, 254.0, 49)
N_THRESHOLDS = len(THRESHOLDS)
FULL_NEURON = 2 * N_THRESHOLDS
N_SEQUENCE_NEURONS = 2 * N_THRESHOLDS + 1
SMNIST_MODES = ("pixel", "row")


def source_text():
    """Where the files come from: the official page, a mirror, and the address the ``mnist``
    package downloads from when that is another one."""
    text = f"{SOURCE_URL} (mirror: {MIRROR_URL}"
    package_url = getattr(mnist, "datasets_url", SOURCE_URL)
    if package_url not in (SOURCE_URL, MIRROR_URL):
        text += f"; the mnist package downloads from {package_url}"
    return text + ")"


def find_file(folder, name):
    """Path of ``name`` or ``name.gz`` in ``folder`` (the plain file first), None if neither."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(str(folder), candidate)
        if os.path.isfile(path):
            return path
    return None


def download(folder, name):
    """Fetch ``name.gz`` into ``folder`` with ``mnist.download_file`` (from ``mnist.datasets_url``);
    returns its path. The file is downloaded into a temporary folder beside it and moved into
    place when complete, so an interrupted download leaves nothing behind."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name + ".gz")
    tmp = tempfile.mkdtemp(dir=folder, prefix=".download_")
    try:
        path = mnist.download_file(name + ".gz", target_dir=tmp)
        if not os.path.isfile(path):
            raise RuntimeError(f"{path} does not exist after the download")
        os.replace(path, target)
    except Exception as e:
        raise RuntimeError(f"downloading {name}.gz from {getattr(mnist, 'datasets_url', '?')} "
                           f"into {folder} failed: {e!r}; get the file by hand from "
                           f"{source_text()}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_idx(path, kind):
    """The array in an MNIST IDX file (plain, or gzipped when the name ends in .gz): uint8 images
    (n, 28, 28) for ``kind`` "images", int64 labels 0..9 (n,) for "labels".

    Raises ValueError naming the file when it cannot be read or unzipped, its magic number is not
    that of ``kind``, its data are shorter or longer than its header says, the images are not
    28 x 28, or a label is not a digit."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:              # not gzip, truncated gzip, unreadable
        raise ValueError(f"{path} could not be read ({e})") from e
    expected = MAGIC[kind]
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != expected:
        found = "no header" if magic is None else f"magic number 0x{magic:08x}"
        raise ValueError(f"{path}: {found}, expected 0x{expected:08x} (MNIST {kind}: unsigned "
                         f"bytes, {3 if kind == 'images' else 1} dimension"
                         f"{'s' if kind == 'images' else ''}); not an MNIST {kind} file")
    try:
        array = mnist.parse_idx(io.BytesIO(raw))
    except (mnist.IdxDecodeError, struct.error, ValueError) as e:
        raise ValueError(f"{path} is not a valid IDX file: {e}") from e
    if kind == "images":
        if array.ndim != 3 or array.shape[1:] != (SIDE, SIDE):
            raise ValueError(f"{path}: images of shape {array.shape[1:]}, expected "
                             f"({SIDE}, {SIDE})")
        return np.ascontiguousarray(array, dtype=np.uint8)
    labels = np.asarray(array, dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{path}: sample {i} has label {labels[i]}, but MNIST has "
                         f"{N_CLASSES} classes (the digits 0..{N_CLASSES - 1})")
    return labels


def load_split(folder, split, download=False):
    """(images uint8 (n, 28, 28), labels int64 (n,)) of the "train" or "test" files in
    ``folder``.

    A missing file raises FileNotFoundError naming the path and the source, unless ``download``:
    then it is fetched first (``download``). Malformed files raise ValueError (``read_idx``), as do
    image and label files of different length."""
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; allowed: 'train', 'test'")
    paths = []
    for name in FILES[split]:
        path = find_file(folder, name)
        if path is None and download:
            path = _download(folder, name)
        if path is None:
            where = os.path.join(str(folder), name)
            raise FileNotFoundError(
                f"MNIST file {where} (or {where}.gz) not found; download {name}.gz from "
                f"{source_text()} into {folder}, or set DOWNLOAD=True in the simulator's p to "
                f"fetch it with the mnist package where the machine is online")
        paths.append(path)
    labels = read_idx(paths[1], "labels")          # the small file first: its errors come cheap
    images = read_idx(paths[0], "images")
    if len(images) != len(labels):
        raise ValueError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} "
                         f"labels; they must agree")
    return images, labels


_download = download        # load_split's parameter ``download`` hides the function there


# --- MNIST: one spike per pixel ---------------------------------------------------------------

def pixel_spike_times(grey, dt, trial_ms):
    """Spike time (ms) of pixels of grey value ``grey``: 2 dt + (255 - g) / 255 (T - 4 dt), NaN for
    the silent values g <= 1."""
    g = np.asarray(grey, dtype=np.float64)
    t = 2.0 * dt + (255.0 - g) / 255.0 * (trial_ms - 4.0 * dt)
    return np.where(g > 1, t, np.nan)


def mnist_step_table(dt, trial_ms):
    """Step at which a pixel of each grey value 0..255 fires (``times_to_steps`` of
    ``pixel_spike_times``), -1 for silent values."""
    t = pixel_spike_times(np.arange(256), dt, trial_ms)
    steps = np.full(256, -1, dtype=np.int64)
    steps[2:] = times_to_steps(t[2:], dt)
    return steps


class MNISTEncoder:
    """Images -> ``SpikeData`` of 784 input neurons, one spike per pixel brighter than 1."""

    def __init__(self, dt, trial_ms):
        self.n_steps = int(round(trial_ms / dt))
        self.n_channels = N_PIXELS
        self.table = mnist_step_table(dt, trial_ms)

    def __call__(self, images, labels):
        flat = np.asarray(images, dtype=np.uint8).reshape(len(images), N_PIXELS)
        sample, pixel = np.nonzero(flat > 1)
        steps = self.table[flat[sample, pixel]]
        return SpikeData.from_flat(sample, steps, pixel, labels, self.n_steps, self.n_channels)


# --- Sequential MNIST: threshold crossings ----------------------------------------------------

def smnist_sequences(images, mode):
    """The pixel-value sequences of sequential MNIST, shape (n, slots, parallel sequences):
    "pixel": the 784 pixels in row-major order, one sequence (n, 784, 1); "row": one slot per row,
    the 28 columns as 28 parallel sequences (n, 28, 28), sequence c = column c from top to
    bottom."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, SIDE, SIDE)
    if mode == "pixel":
        return images.reshape(len(images), N_PIXELS, 1)
    if mode == "row":
        return images
    raise ValueError(f"unknown SMNIST mode {mode!r}; allowed: 'pixel', 'row'")


def smnist_events(sequences):
    """Threshold-crossing events of pixel-value sequences x[0], x[1], ..., one slot per value,
    with x[-1] = 0 (the value before the first slot). With the 49 thresholds
    theta_k = 254 k / 48 (k = 0..48), neuron j of a sequence fires in slot s when

    * j = k (up, 0..48):          x[s-1] <= theta_k < x[s]  (the value rises past theta_k);
    * j = 49 + k (down, 49..97):  x[s] <= theta_k < x[s-1]  (the value falls back to theta_k or
      below);
    * j = 98:                     x[s] == 255 (every slot at full brightness).

    So a pixel that turns on fires the up neurons of every threshold below its value at once,
    theta_0 = 0 included, and one that turns off fires the down neurons of those thresholds;
    an unchanged value fires nothing (but the 255 neuron). This is the plain definition
    (numpy, memory-hungry): ``sequences`` (n, slots, m) -> bool (n, slots, m, 99).
    ``SMNISTEncoder`` computes the same events in a compiled loop."""
    x = np.asarray(sequences, dtype=np.float64)
    prev = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    x4, p4 = x[..., None], prev[..., None]
    up = (p4 <= THRESHOLDS) & (THRESHOLDS < x4)
    down = (x4 <= THRESHOLDS) & (THRESHOLDS < p4)
    return np.concatenate([up, down, x4 == 255.0], axis=-1)


@njit(cache=True)
def _smnist_walk(seq, slot_steps, thresholds, n_neurons, offsets, steps, channels, fill):
    """One pass over the events of ``smnist_events``: counts them per sample into offsets[1:]
    (``fill`` False), or writes them from offsets[i] on (``fill`` True). seq (n, slots, m) uint8;
    channel = sequence index * n_neurons + neuron; within a sample the spikes come ordered by slot,
    then channel."""
    n, S, m = seq.shape
    K = len(thresholds)
    for i in range(n):
        w = offsets[i] if fill else 0
        for s in range(S):
            for q in range(m):
                x = np.float64(seq[i, s, q])
                prev = np.float64(seq[i, s - 1, q]) if s > 0 else 0.0
                base = q * n_neurons
                if x != prev:
                    shift = K if x < prev else 0          # down neurons follow the up neurons
                    lo, hi = min(x, prev), max(x, prev)
                    for k in range(K):
                        if lo <= thresholds[k] < hi:
                            if fill:
                                steps[w] = slot_steps[s]
                                channels[w] = base + shift + k
                            w += 1
                if x == 255.0:
                    if fill:
                        steps[w] = slot_steps[s]
                        channels[w] = base + 2 * K
                    w += 1
        if not fill:
            offsets[i + 1] = w


def _smnist_spikes(seq, slot_steps):
    """(steps, channels, offsets) of the events of ``seq`` (n, slots, m), in two compiled
    passes (count, then fill)."""
    n = len(seq)
    offsets = np.zeros(n + 1, dtype=np.int64)
    none = np.zeros(0, dtype=np.int32)
    _smnist_walk(seq, slot_steps, THRESHOLDS, N_SEQUENCE_NEURONS, offsets, none, none, False)
    np.cumsum(offsets, out=offsets)
    steps = np.empty(offsets[-1], dtype=np.int32)
    channels = np.empty(offsets[-1], dtype=np.int32)
    _smnist_walk(seq, slot_steps, THRESHOLDS, N_SEQUENCE_NEURONS, offsets, steps, channels, True)
    return steps, channels, offsets


def smnist_slot_steps(n_slots, pixel_ms, dt):
    """Step of each slot: slot s starts at s * pixel_ms and its spikes are emitted at
    ``times_to_steps(s * pixel_ms, dt)``."""
    return times_to_steps(np.arange(n_slots) * float(pixel_ms), dt)


class SMNISTEncoder:
    """Images -> ``SpikeData`` of sequential MNIST (``smnist_events``): "pixel" mode 99 input
    neurons, 784 slots; "row" mode 28 x 99 input neurons (column c: c * 99 + j), 28 slots.
    Slot s starts at s * pixel_ms."""

    def __init__(self, mode, pixel_ms, dt, trial_ms):
        if mode not in SMNIST_MODES:
            raise ValueError(f"unknown SMNIST mode {mode!r}; allowed: 'pixel', 'row'")
        self.mode = mode
        n_slots, n_seq = (N_PIXELS, 1) if mode == "pixel" else (SIDE, SIDE)
        self.n_steps = int(round(trial_ms / dt))
        self.n_channels = n_seq * N_SEQUENCE_NEURONS
        self.slot_steps = smnist_slot_steps(n_slots, pixel_ms, dt)
        if np.any(np.diff(self.slot_steps) <= 0) or self.slot_steps[-1] >= self.n_steps:
            raise ValueError(f"the {n_slots} slots of {pixel_ms} ms need distinct steps of "
                             f"{dt} ms inside the trial of {trial_ms} ms")

    def __call__(self, images, labels):
        seq = np.ascontiguousarray(smnist_sequences(images, self.mode))
        steps, channels, offsets = _smnist_spikes(seq, self.slot_steps)
        return SpikeData(steps, channels, offsets, labels, self.n_steps, self.n_channels)


# --- images as a data set of the engine -------------------------------------------------------

class ImageSpikes:
    """Images and labels that turn into input spikes when a mini-batch asks for them: what
    ``training.trainer.Trainer`` needs of a data set (``labels``, ``len``, ``batch``) plus ``subset``
    and ``spikes``. ``encoder(images, labels)`` returns a ``SpikeData``."""

    def __init__(self, images, labels, encoder):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.encoder = encoder
        self.n_steps = encoder.n_steps
        self.n_channels = encoder.n_channels
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels must have the same length")

    def __len__(self):
        return len(self.labels)

    def subset(self, indices):
        """A new ``ImageSpikes`` of the samples ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        return ImageSpikes(self.images[indices], self.labels[indices], self.encoder)

    def spikes(self, indices=None):
        """``SpikeData`` of the samples ``indices`` (None: all)."""
        if indices is None:
            return self.encoder(self.images, self.labels)
        indices = np.asarray(indices, dtype=np.int64).ravel()
        return self.encoder(self.images[indices], self.labels[indices])

    def batch(self, indices, p_drop=0.0, rng=None, shifts=(0,)):
        """Engine layout of the samples ``indices`` (``SpikeData.batch``)."""
        indices = np.asarray(indices, dtype=np.int64)
        return self.spikes(indices).batch(np.arange(len(indices)), p_drop, rng, shifts)
