"""Result, log, weight and checkpoint files, all written atomically: write to a temporary file
in the same folder, then rename."""
import json
import os
import tempfile
import time

import numpy as np


def _atomic_write(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npy(path, array):
    """np.save, atomically."""
    _atomic_write(path, lambda f: np.save(f, np.asarray(array)))


def save_npz(path, arrays):
    """np.savez of a dict of arrays, atomically."""
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def save_text(path, text):
    _atomic_write(path, lambda f: f.write(text.encode()))


def save_json(path, obj):
    _atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default)
                                          .encode()))


def append_line(path, line):
    """Append one line to a text file by rewriting it atomically (a killed run never leaves a
    half-written line)."""
    old = b""
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
    _atomic_write(path, lambda f: f.write(old + (line.rstrip("\n") + "\n").encode()))


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


class ResultsFile:
    """{NAME}_results.txt: one line per epoch, "epoch train_acc train_loss eval_acc eval_loss
    [extra columns] seconds" (0 for a part that did not run), after a '#' header naming the
    columns; np.loadtxt reads it."""

    def __init__(self, path, extra_columns=()):
        self.path = path
        self.header = " ".join(["# epoch train_acc train_loss eval_acc eval_loss",
                                *extra_columns, "seconds"])

    def line(self, epoch, train, evaluation, seconds, extra=()):
        values = []
        for stats in (train, evaluation):
            values += [stats.accuracy, stats.mean_loss] if stats is not None else [0.0, 0.0]
        values += list(extra)
        return " ".join([str(epoch)] + [f"{v:.6f}" for v in values] + [f"{seconds:.3f}"])

    def write(self, epoch, train, evaluation, seconds, extra=()):
        """Append the line of this epoch; returns it."""
        if not os.path.exists(self.path):
            append_line(self.path, self.header)
        text = self.line(epoch, train, evaluation, seconds, extra)
        append_line(self.path, text)
        return text


class EpochLog:
    """Machine-readable per-epoch log: one JSON object per line ({NAME}_log.jsonl), easy to load
    with ``load_epoch_log`` or pandas.read_json(lines=True) and to plot."""

    def __init__(self, path):
        self.path = path

    def write(self, **record):
        append_line(self.path, json.dumps(record, default=_json_default))


def load_epoch_log(path):
    """List of per-epoch dicts written by ``EpochLog``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
