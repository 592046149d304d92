"""DVS128 Gesture (Amir et al. 2017, 11 classes): reading the recordings through tonic and binning
them onto the simulation grid.

The files are the ones ``tonic.datasets.DVSGesture`` (tonic 1.7) downloads and reads: the
recordings already cut into one file per gesture, in

    DATA_DIR/DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy ... 10.npy
    DATA_DIR/DVSGesture/ibmGestureTest/user24_led/...

(``save_to`` = DATA_DIR; tonic adds the class name ``DVSGesture``). A folder is named
``user<id>_<lighting>``; a file is named ``<class>.npy`` (class 0..10) and holds a 2-D array with
one row per event and the columns x, y, polarity, time in milliseconds. tonic multiplies the time by
1000 and returns a structured array with fields x, y (int16, 0..127), p (bool) and t (int64
microseconds); the sensor size is (128, 128, 2). tonic also wants the downloaded archive
(``ibmGestureTrain.tar.gz``) next to the folder and otherwise downloads it; here the extracted
recordings are enough: nothing is downloaded unless ``download`` is asked for.

Binning (``bin_events``), per recording:

1. time origin: the recording's time zero as tonic gives it; ``start_ms`` (CROP_START_MS) moves
   the window: step = floor((t_us - 1000 start_ms) / (1000 DT_MS)), events with step outside
   [0, n_steps) are dropped (the window is [start_ms, start_ms + TRIAL_MS));
2. space: 128 x 128 -> 32 x 32 by integer division of x and y by 4 (tonic's ``Downsample`` with
   spatial factor 0.25);
3. channel = (y * 32 + x) * 2 + p (2048 channels, both polarities, as in mlGeNN's DVS
   experiments);
4. a (channel, step) pair fires at most once.

The original kept tonic's microseconds and used them as milliseconds; here the
time is converted.
"""
import hashlib
import os
import re
import warnings

import numpy as np

from eventprop.data import cache
from eventprop.data.spikes import SpikeData

SOURCE_URL = "https://research.ibm.com/interactive/dvsgesture/"
DATASET_FOLDER = "DVSGesture"            # tonic's folder under save_to (the class name)
SPLIT_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
ARCHIVES = {"train": "ibmGestureTrain.tar.gz", "test": "ibmGestureTest.tar.gz"}
CLASSES = ("hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
           "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise",
           "arm roll", "air drums", "air guitar", "other gestures")
N_CLASSES = len(CLASSES)
SENSOR_SIZE = (128, 128, 2)              # x, y, polarity
FACTOR = 4                               # spatial downsampling: 128 / 4 = 32 pixels a side
SIDE = SENSOR_SIZE[0] // FACTOR
N_CHANNELS = SIDE * SIDE * 2             # 2048

_USER_FOLDER = re.compile(r"^user(\d+)_(.+)$")
_RECORDING = re.compile(r"^(\d+)\.npy$")
_DOWNLOAD_HINT = ("set DOWNLOAD=True in the simulator's p (or call dvs_data.download(DATA_DIR, "
                  "split)) where the machine is online")
# bin edges: a value mathematically on an edge is not pushed into the previous bin by rounding
_EDGE_EPS = 1e-9


def split_folder(data_dir, split):
    """Folder of the recordings of ``split`` ("train" or "test") under ``data_dir``."""
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"unknown split {split!r}; allowed: 'train', 'test'")
    return os.path.join(os.path.expanduser(str(data_dir)), DATASET_FOLDER, SPLIT_FOLDERS[split])


def channel_index(x, y, p):
    """Input channel of sensor pixel (x, y) (0..127) and polarity p (0/1): the 32 x 32 pixel
    (x // 4, y // 4), index (y * 32 + x) * 2 + p."""
    x = np.asarray(x, dtype=np.int64) // FACTOR
    y = np.asarray(y, dtype=np.int64) // FACTOR
    return (y * SIDE + x) * 2 + np.asarray(p, dtype=np.int64)


def channel_pixels(channels):
    """(x, y, p) on the 32 x 32 grid of input channels (the inverse of ``channel_index``)."""
    c = np.asarray(channels, dtype=np.int64)
    pixel = c // 2
    return pixel % SIDE, pixel // SIDE, c % 2


def bin_events(events, dt_ms, n_steps, start_ms=0.0):
    """(steps, channels) of one recording (tonic's structured events, t in microseconds) on a
    grid of ``n_steps`` steps of ``dt_ms`` starting at ``start_ms``; the rule is in the module
    docstring. Sorted by step, then channel; each (channel, step) at most once."""
    t = np.asarray(events["t"], dtype=np.float64) - 1000.0 * float(start_ms)
    steps = np.floor(t / (1000.0 * float(dt_ms)) + _EDGE_EPS).astype(np.int64)
    keep = (steps >= 0) & (steps < n_steps)
    channels = channel_index(events["x"][keep], events["y"][keep],
                             np.asarray(events["p"][keep], dtype=np.int64))
    key = np.unique(steps[keep] * N_CHANNELS + channels)
    return key // N_CHANNELS, key % N_CHANNELS


def spatial_shift(data, s, rng):
    """"spatial_shift": s — per sample an integer shift of the 32 x 32 image in x and one in y,
    each drawn like SHD's "random_shift" (truncation toward zero of U(-s, s)); polarity is kept,
    spikes moved off the image are dropped. Returns a new SpikeData."""
    shifts = np.trunc(rng.uniform(-s, s, size=(len(data), 2))).astype(np.int64)
    sample = data.sample_index()
    x, y, p = channel_pixels(data.channels)
    x = x + shifts[sample, 0]
    y = y + shifts[sample, 1]
    inside = (x >= 0) & (x < SIDE) & (y >= 0) & (y < SIDE)
    channels = np.where(inside, (y * SIDE + x) * 2 + p, -1)     # -1: dropped by from_flat
    return SpikeData.from_flat(sample, data.steps, channels, data.labels, data.n_steps,
                               data.n_channels)


def write_recording(path, x, y, p, t_ms, dtype=np.float64):
    """Write one recording in the format of tonic's DVSGesture files: a 2-D array with the
    columns x, y, p, t (milliseconds), saved with ``np.save``."""
    columns = [np.asarray(v, dtype=np.float64).ravel() for v in (x, y, p, t_ms)]
    if len({len(c) for c in columns}) != 1:
        raise ValueError("x, y, p and t_ms must have the same length")
    os.makedirs(os.path.dirname(os.path.abspath(str(path))), exist_ok=True)
    np.save(str(path), np.stack(columns, axis=1).astype(dtype))


def list_recordings(data_dir, split):
    """Recordings of ``split`` as (relative path, user, lighting, label) sorted by user, lighting
    and label, the way tonic finds them (``.npy`` files in the sub-folders of the split's
    folder). Raises FileNotFoundError naming the folder and the source when there is none, and
    ValueError naming a folder or file whose name tonic cannot parse."""
    folder = split_folder(data_dir, split)
    found = []
    if os.path.isdir(folder):
        for path, dirs, files in os.walk(folder):
            rel = os.path.relpath(path, folder)
            if rel == ".":
                continue
            match = _USER_FOLDER.match(rel.split(os.sep)[0])
            if not match:                        # tonic fails on every such folder
                raise ValueError(f"{path}: a folder in {folder} must be named "
                                 f"user<number>_<lighting> (tonic's DVSGesture layout)")
            for name in files:
                if not name.endswith("npy"):
                    continue
                label = _RECORDING.match(name)
                if not label:
                    raise ValueError(f"{os.path.join(path, name)}: a recording must be named "
                                     f"<class>.npy with class 0..{N_CLASSES - 1} (tonic's "
                                     f"DVSGesture layout)")
                if int(label.group(1)) >= N_CLASSES:
                    raise ValueError(f"{os.path.join(path, name)}: label {int(label.group(1))} "
                                     f"(the file name), but DVS gesture has {N_CLASSES} classes "
                                     f"(0..{N_CLASSES - 1})")
                lighting = rel.split("_", 1)[1]
                found.append((os.path.join(rel, name), int(match.group(1)), lighting,
                              int(label.group(1))))
    if not found:
        raise FileNotFoundError(
            f"no DVS gesture recordings ({split}) in {folder}: expected "
            f"{folder}{os.sep}user<id>_<lighting>{os.sep}<class>.npy, as tonic's DVSGesture "
            f"unpacks {ARCHIVES[split]}. Source of the data set: {SOURCE_URL}; tonic downloads "
            f"the prepared files: {_DOWNLOAD_HINT}")
    return sorted(found, key=lambda r: (r[1], r[2], r[3], r[0]))


def _tonic_dataset(data_dir, split, allow_download):
    """tonic's DVSGesture for ``split``; its ``download`` runs only with ``allow_download`` (it
    would otherwise fetch the archive whenever the archive is missing, even with the recordings
    unpacked)."""
    try:
        import tonic.datasets
    except ImportError as e:
        raise ImportError(f"reading DVS gesture needs the tonic package: pip install tonic "
                          f"({e})") from e

    class DVSGesture(tonic.datasets.DVSGesture):     # the name sets tonic's folder
        def download(self):
            if allow_download:
                super().download()

    return DVSGesture(save_to=str(data_dir), train=(split == "train"))


def download(data_dir, split):
    """Make sure the recordings of ``split`` are in ``split_folder(data_dir, split)``, letting
    tonic download and unpack the archive when there are none; returns the folder. Recordings
    already there are used as they are."""
    folder = split_folder(data_dir, split)
    try:
        list_recordings(data_dir, split)
        return folder
    except FileNotFoundError:
        pass
    try:
        _tonic_dataset(data_dir, split, allow_download=True)
        list_recordings(data_dir, split)
    except Exception as e:
        archive = os.path.join(os.path.dirname(folder), ARCHIVES[split])
        hint = (f"; if {archive} is left from an interrupted download, delete it"
                if os.path.isfile(archive) else "")
        raise RuntimeError(f"downloading DVS gesture ({split}) with tonic into {data_dir} "
                           f"failed: {e!r} (source: {SOURCE_URL}{hint})") from e
    return folder


def read_recording(dataset, index):
    """(events, label) of recording ``index`` of a tonic DVSGesture dataset, checked: ValueError
    naming the file when it cannot be read as a recording or has coordinates outside the
    sensor."""
    path = dataset.data[index]
    try:
        events, label = dataset[index]
        events = np.asarray(events)
        t = events["t"]
    except Exception as e:
        raise ValueError(f"{path} is not a DVS gesture recording (expected a 2-D array with the "
                         f"columns x, y, p, t in ms, as tonic's DVSGesture files): {e}") from e
    for axis, size in (("x", SENSOR_SIZE[0]), ("y", SENSOR_SIZE[1])):
        values = events[axis].astype(np.int64)
        outside = np.flatnonzero((values < 0) | (values >= size))
        if len(outside):
            i = int(outside[0])
            raise ValueError(f"{path}: event {i} has {axis} = {values[i]}, outside the "
                             f"{SENSOR_SIZE[0]} x {SENSOR_SIZE[1]} DVS128 sensor (x and y "
                             f"0..{size - 1})")
    negative = np.flatnonzero(t < 0)
    if len(negative):
        raise ValueError(f"{path}: event {int(negative[0])} has the negative time "
                         f"{t[negative[0]]} us")
    return events, int(label)


def _fingerprint(data_dir, split, recordings):
    """Hash of the file list with every file's size and modification time."""
    folder = split_folder(data_dir, split)
    h = hashlib.sha1()
    for rel, *_ in recordings:
        st = os.stat(os.path.join(folder, rel))
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_name(data_dir, split, dt_ms, trial_ms, start_ms=0.0, recordings=None):
    """(file name, key) of the .npz cache of one binned split. The name encodes DT_MS, TRIAL_MS
    and CROP_START_MS and a hash of the recordings (names, sizes, modification times): changed
    files get a new cache."""
    recordings = list_recordings(data_dir, split) if recordings is None else recordings
    key = (f"DVSGesture|{split}|dt={float(dt_ms)!r}|T={float(trial_ms)!r}|"
           f"start={float(start_ms)!r}|files={_fingerprint(data_dir, split, recordings)}")
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return (f"DVSGesture_{split}_dt{float(dt_ms):g}_T{float(trial_ms):g}_"
            f"start{float(start_ms):g}_{digest}.npz"), key


def load_split(data_dir, split, dt_ms, trial_ms, start_ms=0.0, cache_dir=None, download=False):
    """Binned recordings of ``split`` as (SpikeData, users, files): n_steps =
    round(trial_ms / dt_ms), 2048 channels, labels 0..10; users (int array) and files (paths
    relative to the split's folder) per sample. Samples are sorted by user, lighting and label
    (tonic's order depends on the file system).

    The result is cached as an .npz written atomically, in ``cache_dir``, or by default in
    DATA_DIR/DVSGesture/cache (``eventprop.data.cache``: a user cache folder when that cannot be
    written); later calls with the same parameters and unchanged recordings read it. With
    ``download`` missing recordings are first fetched with tonic. Warns when recordings have no
    event in the window."""
    if not (dt_ms > 0 and trial_ms > 0 and start_ms >= 0):
        raise ValueError("dt_ms and trial_ms must be positive and start_ms non-negative")
    n_steps = int(round(trial_ms / dt_ms))
    if download:
        _download(data_dir, split)
    recordings = list_recordings(data_dir, split)
    name, key = cache_name(data_dir, split, dt_ms, trial_ms, start_ms, recordings)
    default_folder = os.path.join(os.path.dirname(split_folder(data_dir, split)), "cache")
    folders = cache.folders(default_folder, cache_dir, DATASET_FOLDER)
    cached = cache.read(name, key, folders)
    if cached is not None:
        data, users, files = (SpikeData.from_arrays(cached), cached["users"],
                              [str(f) for f in cached["files"]])
    else:
        data, users, files = _bin_split(data_dir, split, recordings, dt_ms, n_steps, start_ms)
        cache.write(name, {"key": np.array(key), **data.arrays(), "users": users,
                           "files": np.array(files)}, folders, DATASET_FOLDER)
    empty = np.flatnonzero(data.spike_counts() == 0)
    if len(empty):
        warnings.warn(f"{len(empty)} of {len(data)} DVS gesture recordings ({split}) have no "
                      f"event in [{float(start_ms):g}, {float(start_ms) + float(trial_ms):g}) ms, "
                      f"e.g. {os.path.join(split_folder(data_dir, split), files[empty[0]])}",
                      RuntimeWarning, stacklevel=2)
    return data, users, files


_download = download        # load_split's parameter ``download`` hides the function there


def _bin_split(data_dir, split, recordings, dt_ms, n_steps, start_ms):
    """Read every recording through tonic and bin it: (SpikeData, users, files) in the order of
    ``recordings``."""
    dataset = _tonic_dataset(data_dir, split, allow_download=False)
    folder = split_folder(data_dir, split)
    position = {os.path.normpath(os.path.relpath(f, folder)): i
                for i, f in enumerate(dataset.data)}
    step_lists, channel_lists, labels, users, files = [], [], [], [], []
    for rel, user, _, label in recordings:
        index = position.get(os.path.normpath(rel))
        if index is None:                        # tonic did not list it: should not happen
            raise ValueError(f"tonic's DVSGesture did not find {os.path.join(folder, rel)}")
        events, target = read_recording(dataset, index)
        steps, channels = bin_events(events, dt_ms, n_steps, start_ms)
        step_lists.append(steps.astype(np.int32))          # ordered and unique already
        channel_lists.append(channels.astype(np.int32))
        labels.append(target)
        users.append(user)
        files.append(rel)
    offsets = np.zeros(len(step_lists) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in step_lists], out=offsets[1:])
    data = SpikeData(np.concatenate(step_lists), np.concatenate(channel_lists), offsets, labels,
                     n_steps, N_CHANNELS)
    return data, np.asarray(users, dtype=np.int64), files
