"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): reading the official HDF5
files and binning them onto the simulation grid.

The official files (Cramer et al. 2020, Zenke lab) are PyTables files with ``/spikes/times``
(VLArray of spike times in seconds), ``/spikes/units`` (VLArray of channel ids 0..699, uint16),
``/labels`` and, for SHD, ``/extra/speaker``. Put the files (gunzipped) into ``data_dir``; this
module reads them and downloads nothing unless asked: ``download`` (or ``load_dataset(...,
download=True)``) lets the ``tonic`` package fetch a missing file where the machine is online.

Binning (``bin_spikes``), as the reference pipeline does it (tonic + ``EventsToGrid`` +
``rescale``):

1. times -> integer microseconds, truncated (tonic's cast);
2. keep spikes with t_us <= TRIAL_MS * 1000 (tonic ``CropTime(max=...)`` keeps t <= max);
3. bin = floor(t_us / (DT_MS * 1000)) (histogram with edges 0, Δ, 2Δ, ...);
4. step = floor(bin * RESCALE_T), channel = floor(c * RESCALE_X); spikes with step >= n_steps
   (t >= T) or channel >= n_channels are dropped; a (channel, step) pair fires at most once.

With RESCALE_T = 1 the step is the bin itself. The crop of step 2 acts on the *unscaled* time,
so with RESCALE_T < 1 spikes from beyond TRIAL_MS are not pulled into the trial.
"""
import collections
import hashlib
import os

import numpy as np

from eventprop.data import cache
from eventprop.data.spikes import SpikeData

DATA_FILES = {
    "SHD": {"train": "shd_train.h5", "test": "shd_test.h5"},
    "SSC": {"train": "ssc_train.h5", "valid": "ssc_valid.h5", "test": "ssc_test.h5"},
}

SOURCE_URLS = {
    "SHD": "https://zenkelab.org/datasets/ (files: https://compneuro.net/datasets/shd_*.h5.gz)",
    "SSC": "https://zenkelab.org/datasets/ (files: https://compneuro.net/datasets/ssc_*.h5.gz)",
}

N_CHANNELS = 700
N_CLASSES = {"SHD": 20, "SSC": 35}

_DOWNLOAD_HINT = ("set DOWNLOAD=True in the simulator's p (or call eventprop.data.shd.download) to fetch it "
                  "with tonic (pip install tonic) where the machine is online")

# Small tolerance on float products so that a value that is mathematically on a bin edge is not
# pushed into the previous bin by rounding (e.g. 10 * 0.3 = 2.9999...).
_EDGE_EPS = 1e-9

H5Data = collections.namedtuple("H5Data", ["times", "units", "labels", "speakers"])
H5Data.__doc__ = """Contents of one official file: per-sample arrays of spike times (s, float64)
and channels (int64), labels (int64 array), speakers (int64 array, or None when absent)."""


def _source_of(path):
    """Official source of the data set a file name belongs to (both when unknown)."""
    dataset = _dataset_of_file(path)
    if dataset is not None:
        return SOURCE_URLS[dataset]
    return f"SHD: {SOURCE_URLS['SHD']}; SSC: {SOURCE_URLS['SSC']}"


def _open_h5(path):
    """The official file at ``path`` opened with PyTables (read only).

    Raises FileNotFoundError (naming the path and the official source) when the file is missing,
    ValueError naming the file when it is not HDF5."""
    import tables

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"data file {path} not found; download it (gunzipped) from {_source_of(path)}, "
            f"or {_DOWNLOAD_HINT}")
    try:
        is_hdf5 = tables.is_hdf5_file(path)
    except Exception as e:                      # unreadable header, etc.
        raise ValueError(f"{path} is not a readable HDF5 file ({e})") from e
    if not is_hdf5:
        raise ValueError(f"{path} is not an HDF5 file (expected the official file from "
                         f"{_source_of(path)})")
    try:
        return tables.open_file(path, mode="r")
    except Exception as e:
        raise ValueError(f"{path} could not be opened as HDF5 ({e})") from e


def _node(h5, path, name, required=True):
    """Node ``name`` of an open file; ValueError naming the file when a required one is
    missing, None when an optional one is."""
    import tables

    try:
        return h5.get_node(name)
    except tables.NoSuchNodeError:
        if required:
            raise ValueError(f"{path} lacks the required node {name} (not an official "
                             f"SHD/SSC file?)") from None
        return None


def _dataset_of_file(path):
    """"SHD" or "SSC" from an official file name, None for another name."""
    name = os.path.basename(str(path)).lower()
    return next((d for d in DATA_FILES if name.startswith(d.lower())), None)


def _check_labels(path, labels, n_classes):
    """ValueError naming the file, the first bad sample and its label when a label is negative or
    not below ``n_classes`` (None: the number of classes of the data set the file name says)."""
    dataset = _dataset_of_file(path)
    if n_classes is None and dataset is not None:
        n_classes = N_CLASSES[dataset]
    negative = np.flatnonzero(labels < 0)
    if len(negative):
        i = int(negative[0])
        raise ValueError(f"{path}: sample {i} has the negative label {labels[i]}")
    too_large = np.flatnonzero(labels >= n_classes) if n_classes is not None else []
    if len(too_large):
        i = int(too_large[0])
        raise ValueError(f"{path}: sample {i} has label {labels[i]}, but "
                         f"{dataset or 'the data set'} has {n_classes} classes "
                         f"(0..{n_classes - 1})")


def _check_units(path, units):
    """ValueError naming the file, the first sample and its channel when a channel id is not
    one of the 700 channels 0..699."""
    for i, u in enumerate(units):
        bad = (u < 0) | (u >= N_CHANNELS)
        if np.any(bad):
            raise ValueError(f"{path}: sample {i} has channel {u[np.argmax(bad)]}, but SHD and "
                             f"SSC have {N_CHANNELS} channels (0..{N_CHANNELS - 1})")


def read_labels(path, n_classes=None):
    """(labels, speakers or None) of an official file, without its spikes: a cheap read that
    gives the number of samples and their classes. The nodes, their lengths and the labels are
    checked as in ``read_h5``."""
    path = str(path)
    with _open_h5(path) as h5:
        n_times = _node(h5, path, "/spikes/times").nrows
        n_units = _node(h5, path, "/spikes/units").nrows
        labels = np.asarray(_node(h5, path, "/labels").read(), dtype=np.int64).reshape(-1)
        speaker_node = _node(h5, path, "/extra/speaker", required=False)
        speakers = None if speaker_node is None else \
            np.asarray(speaker_node.read(), dtype=np.int64).reshape(-1)
    if not (n_times == n_units == len(labels)):
        raise ValueError(f"{path}: /spikes/times has {n_times} samples, /spikes/units "
                         f"{n_units}, /labels {len(labels)}; they must agree")
    if speakers is not None and len(speakers) != len(labels):
        raise ValueError(f"{path}: /extra/speaker has {len(speakers)} entries but /labels "
                         f"{len(labels)}")
    _check_labels(path, labels, n_classes)
    return labels, speakers


def read_h5(path, n_classes=None):
    """Read an official SHD/SSC file with PyTables; returns ``H5Data``.

    Raises FileNotFoundError (naming the path and the official source) when the file is missing,
    ValueError naming the file when it is not HDF5, lacks a required node, has a sample whose
    times and units differ in length, a label outside 0..n_classes - 1 (None: 20 for SHD, 35 for
    SSC files, by their name) or a channel outside 0..699 (naming the sample and the value).
    """
    path = str(path)
    with _open_h5(path) as h5:
        times_node = _node(h5, path, "/spikes/times")
        units_node = _node(h5, path, "/spikes/units")
        labels_node = _node(h5, path, "/labels")
        speaker_node = _node(h5, path, "/extra/speaker", required=False)
        times = [np.asarray(t, dtype=np.float64) for t in times_node.read()]
        units = [np.asarray(u, dtype=np.int64) for u in units_node.read()]
        labels = np.asarray(labels_node.read(), dtype=np.int64).reshape(-1)
        speakers = None if speaker_node is None else \
            np.asarray(speaker_node.read(), dtype=np.int64).reshape(-1)
    if not (len(times) == len(units) == len(labels)):
        raise ValueError(f"{path}: /spikes/times has {len(times)} samples, /spikes/units "
                         f"{len(units)}, /labels {len(labels)}; they must agree")
    if speakers is not None and len(speakers) != len(labels):
        raise ValueError(f"{path}: /extra/speaker has {len(speakers)} entries but /labels "
                         f"{len(labels)}")
    for i, (t, u) in enumerate(zip(times, units)):
        if len(t) != len(u):
            raise ValueError(f"{path}: sample {i} has {len(t)} spike times but {len(u)} units")
    _check_labels(path, labels, n_classes)
    _check_units(path, units)
    return H5Data(times, units, labels, speakers)


def bin_spikes(times_s, units, dt_ms, n_steps, rescale_t=1.0, rescale_x=1.0,
               n_channels=N_CHANNELS):
    """(steps, channels) of one sample on a grid of ``n_steps`` steps of ``dt_ms``
    (the rule is in the module docstring). Sorted by step, then channel; each (channel, step) at
    most once; every other distinct pair is kept."""
    times_s = np.asarray(times_s, dtype=np.float64).reshape(-1)
    units = np.asarray(units, dtype=np.int64).reshape(-1)
    if len(times_s) != len(units):
        raise ValueError(f"{len(times_s)} spike times but {len(units)} units")
    t_us = np.trunc(times_s * 1e6)                       # integer microseconds (truncated)
    trial_us = n_steps * dt_ms * 1000.0
    keep = (t_us >= 0) & (t_us <= trial_us + _EDGE_EPS)  # CropTime(max=TRIAL_MS)
    t_us, units = t_us[keep], units[keep]
    bins = np.floor(t_us / (dt_ms * 1000.0) + _EDGE_EPS)
    steps = np.floor(bins * rescale_t + _EDGE_EPS).astype(np.int64)
    channels = np.floor(units * rescale_x + _EDGE_EPS).astype(np.int64)
    keep = (steps < n_steps) & (channels >= 0) & (channels < n_channels)
    key = np.unique(steps[keep] * n_channels + channels[keep])
    return key // n_channels, key % n_channels


def _check_choice(dataset, split):
    if dataset not in DATA_FILES:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: "
                         f"{', '.join(repr(d) for d in DATA_FILES)}")
    if split not in DATA_FILES[dataset]:
        raise ValueError(f"unknown split {split!r} for {dataset}; allowed: "
                         f"{', '.join(repr(s) for s in DATA_FILES[dataset])}")


def download(data_dir, dataset, split):
    """Make sure ``data_dir/DATA_FILES[dataset][split]`` exists, letting tonic download and unzip
    it when it is missing; returns the file's path.

    tonic (1.7) puts the files of ``tonic.datasets.SHD(save_to)`` / ``SSC(save_to)`` into
    ``save_to/SHD`` / ``save_to/SSC`` (the class name), next to the downloaded ``.zip``. So
    ``data_dir`` must end in a folder named like the data set (``.../SHD`` or ``.../SSC``); its
    parent is passed as ``save_to``. A file already present is used as it is, without tonic.
    """
    _check_choice(dataset, split)
    name = DATA_FILES[dataset][split]
    path = os.path.join(str(data_dir), name)
    if os.path.isfile(path):
        return path
    folder = os.path.abspath(str(data_dir))
    if os.path.basename(folder) != dataset:
        raise ValueError(f"cannot download {name} into {data_dir}: tonic puts the {dataset} files "
                         f"into a folder named {dataset!r}, so data_dir must end in /{dataset}")
    try:
        import tonic.datasets
    except ImportError as e:
        raise ImportError(f"downloading {name} needs the tonic package: pip install tonic "
                          f"({e})") from e
    cls = getattr(tonic.datasets, dataset)
    try:
        if dataset == "SHD":
            cls(save_to=os.path.dirname(folder), train=(split == "train"))
        else:
            cls(save_to=os.path.dirname(folder), split=split)
        if not os.path.isfile(path):
            raise RuntimeError(f"tonic finished but {path} does not exist")
    except Exception as e:
        hint = ""
        archive = path + ".zip"
        if not os.path.isfile(path) and os.path.isfile(archive):
            hint = (f"; if {archive} is left from an interrupted download, delete it: while "
                    f"it exists tonic may skip the download")
        raise RuntimeError(f"downloading {name} with tonic into {data_dir} failed: {e!r} "
                           f"(official source: {SOURCE_URLS[dataset]}{hint})") from e
    return path


_download = download        # load_dataset's parameter ``download`` hides the function there


def cache_name(data_dir, dataset, split, dt_ms, trial_ms, rescale_t=1.0, rescale_x=1.0):
    """(file name, key) of the .npz cache of one binned split; the name encodes the parameters
    and the source file's size and modification time (a changed file gets a new name)."""
    _check_choice(dataset, split)
    source = os.path.join(str(data_dir), DATA_FILES[dataset][split])
    st = os.stat(source)
    key = (f"{dataset}|{split}|dt={float(dt_ms)!r}|T={float(trial_ms)!r}|"
           f"rt={float(rescale_t)!r}|rx={float(rescale_x)!r}|size={st.st_size}|"
           f"mtime={st.st_mtime_ns}")
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return (f"{dataset}_{split}_dt{float(dt_ms):g}_T{float(trial_ms):g}_"
            f"rt{float(rescale_t):g}_rx{float(rescale_x):g}_{digest}.npz"), key


def load_dataset(data_dir, dataset, split, dt_ms, trial_ms, rescale_t=1.0, rescale_x=1.0,
                 cache_dir=None, download=False):
    """Binned split of SHD or SSC as (SpikeData, speakers or None).

    n_steps = round(trial_ms / dt_ms), 700 channels (also when rescale_x < 1, as in the
    reference). The result is cached as an .npz written atomically, in ``cache_dir``, or by
    default in ``data_dir/cache`` (``eventprop.data.cache``: a user cache folder when that
    cannot be written); later calls with the same parameters and unchanged source file read it.
    With ``download`` a missing source file is first fetched with tonic (see ``download``).
    """
    _check_choice(dataset, split)
    if not (dt_ms > 0 and trial_ms > 0 and rescale_t > 0 and rescale_x > 0):
        raise ValueError("dt_ms, trial_ms, rescale_t and rescale_x must be positive")
    n_steps = int(round(trial_ms / dt_ms))
    source = os.path.join(str(data_dir), DATA_FILES[dataset][split])
    if download and not os.path.isfile(source):
        _download(data_dir, dataset, split)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{dataset} {split} file {source} not found; download it "
                                f"(gunzipped) from {SOURCE_URLS[dataset]}, or {_DOWNLOAD_HINT}")
    name, key = cache_name(data_dir, dataset, split, dt_ms, trial_ms, rescale_t, rescale_x)
    folders = cache.folders(os.path.join(str(data_dir), "cache"), cache_dir, dataset)
    cached = cache.read(name, key, folders)
    if cached is not None:
        speakers = cached["speakers"] if bool(cached["has_speakers"]) else None
        return SpikeData.from_arrays(cached), speakers
    raw = read_h5(source)                      # checked against the classes of its data set
    step_lists, channel_lists = [], []
    for t, u in zip(raw.times, raw.units):
        s, c = bin_spikes(t, u, dt_ms, n_steps, rescale_t, rescale_x, N_CHANNELS)
        step_lists.append(s)
        channel_lists.append(c)
    data = SpikeData.from_lists(step_lists, channel_lists, raw.labels, n_steps, N_CHANNELS)
    cache.write(name, {
        "key": np.array(key), **data.arrays(),
        "has_speakers": np.array(raw.speakers is not None),
        "speakers": raw.speakers if raw.speakers is not None else np.zeros(0, np.int64)},
        folders, dataset)
    return data, raw.speakers
