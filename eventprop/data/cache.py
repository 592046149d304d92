"""Where the binned SHD, SSC and DVS gesture data are cached.

The rule: with ``CACHE_DIR`` set, that folder, and an error when it cannot be written. Without
it, ``DATA_DIR/<data set>/cache``; when that folder cannot be written (a shared, read-only data
folder) a cache already there is still read, and a new one goes to the user's cache folder
``$XDG_CACHE_HOME/eventprop/<data set>`` (``~/.cache/eventprop/<data set>`` when
XDG_CACHE_HOME is not set), with a warning that names it.
"""
import os
import warnings

import numpy as np

from eventprop import storage


def user_cache_folder(dataset):
    """``$XDG_CACHE_HOME/eventprop/<dataset>``, or ``~/.cache/eventprop/<dataset>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "eventprop", dataset)


def folders(default_folder, cache_dir, dataset):
    """The folders a cache file is looked for in, the one to write first."""
    if cache_dir is not None:
        return [os.path.expanduser(str(cache_dir))]
    return [str(default_folder), user_cache_folder(dataset)]


def read(name, key, candidates):
    """The arrays of cache file ``name`` in the first of ``candidates`` that holds it with this
    ``key`` (a dict of arrays), or None when there is none (or it is unreadable or stale)."""
    for folder in candidates:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    return {k: z[k] for k in z.files}
        except (OSError, KeyError, ValueError):
            pass                                  # unreadable or stale cache: rebuild it
    return None


def write(name, arrays, candidates, dataset):
    """Save ``arrays`` as cache file ``name`` in the first of ``candidates`` that can be written
    (the rule is in the module docstring); returns its path."""
    failures = []
    for folder in candidates:
        path = os.path.join(folder, name)
        try:
            storage.save_npz(path, arrays)
        except OSError as e:
            failures.append(f"{folder} ({e.strerror or e})")
            continue
        if failures:
            warnings.warn(f"the {dataset} cache folder {failures[0]} cannot be written; the "
                          f"binned data are cached in {folder} instead (set p['CACHE_DIR'] to "
                          f"choose the folder)", RuntimeWarning, stacklevel=3)
        return path
    raise OSError(f"cannot write the binned {dataset} data into "
                          f"{' or '.join(failures)}; set p['CACHE_DIR'] to a folder you can "
                          f"write")
