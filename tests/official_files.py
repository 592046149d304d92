"""Small SHD / SSC files in the official layout, written with PyTables as the originals are."""
import os

import numpy as np
import tables


def write_h5(path, times, units, labels, speakers=None, skip=(), keys=None):
    """A file in the official layout: /spikes/times, /spikes/units (VLArrays), /labels,
    /extra/speaker and /extra/keys (when speakers / keys are given); node names in ``skip`` are
    left out."""
    with tables.open_file(str(path), mode="w") as f:
        spikes = f.create_group("/", "spikes")
        if "times" not in skip:
            vt = f.create_vlarray(spikes, "times", tables.Float32Atom())
            for t in times:
                vt.append(np.asarray(t, dtype=np.float32))
        if "units" not in skip:
            vu = f.create_vlarray(spikes, "units", tables.UInt16Atom())
            for u in units:
                vu.append(np.asarray(u, dtype=np.uint16))
        if "labels" not in skip:
            f.create_array("/", "labels", np.asarray(labels, dtype=np.uint16))
        if speakers is not None or keys is not None:
            extra = f.create_group("/", "extra")
            if speakers is not None:
                f.create_array(extra, "speaker", np.asarray(speakers, dtype=np.uint16))
            if keys is not None:
                f.create_array(extra, "keys", np.asarray(keys, dtype=bytes))


def write_dataset(data_dir, dataset="SHD", n_train=120, n_test=40, n_valid=40, n_classes=4,
                  n_speakers=4, trial_s=0.1, rate=1.5, seed=0):
    """Separable synthetic classes in the official files of ``dataset`` under data_dir/dataset:
    a sample of class c fires on the channels of band c (700 / n_classes channels wide) at about
    ``rate`` spikes per channel, uniformly in [0, trial_s), plus a few spikes anywhere. Speakers
    (SHD only) cycle through 0..n_speakers-1 (ids 10, 11, ...). Returns the folder."""
    folder = os.path.join(str(data_dir), dataset)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    width = 700 // n_classes
    sizes = {"train": n_train, "test": n_test}
    if dataset == "SSC":
        sizes["valid"] = n_valid
    for split, n in sizes.items():
        labels = np.arange(n) % n_classes
        times, units = [], []
        for c in labels:
            k = rng.poisson(rate * width)
            u = np.concatenate([c * width + rng.integers(0, width, k), rng.integers(0, 700, 5)])
            t = rng.uniform(0.0, trial_s, len(u))
            order = np.argsort(t)
            times.append(t[order])
            units.append(u[order])
        speakers = 10 + (np.arange(n) // n_classes) % n_speakers if dataset == "SHD" else None
        write_h5(os.path.join(folder, f"{dataset.lower()}_{split}.h5"), times, units, labels,
                 speakers=speakers)
    return folder
