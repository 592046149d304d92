"""Result, log, weight and checkpoint files, all written atomically: write to a temporary file
in the same folder, then rename. Files get the mode the user's umask gives (as ``open`` would),
and a failed write raises an ``OSError`` naming the file. ``RunLock`` keeps one run per
OUT_DIR/NAME."""
import json
import os
import socket
import time
import uuid
import warnings

import numpy as np


def _atomic_write(path, write):
    """Write a file by ``write(binary file)`` into a temporary file of the same folder, then rename
    it to ``path``: readers see the old or the new file, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp_{uuid.uuid4().hex[:12]}_{os.path.basename(path)}")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") \
                from error
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


def read_lines(path):
    """The lines of a text file without their newlines ([] when there is no file)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def restore_row(path, n_before, row):
    """Make ``row`` line ``n_before + 1`` and the last line of a text file: how a resumed run
    puts the rows of a file back to the state its checkpoint committed (the checkpoint's epoch
    row after the ``n_before`` lines it had before). Returns the number of lines dropped."""
    lines = read_lines(path)
    restored = lines[:n_before] + [row]
    if lines != restored:
        save_text(path, "".join(line + "\n" for line in restored))
    return max(len(lines) - len(restored), 0)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


class ResultsFile:
    """{NAME}_results.txt: one line per epoch (0-based), "epoch train_acc train_loss eval_acc
    eval_loss [extra columns] seconds" (0 for a part that did not run), after a '#' header
    naming the columns; np.loadtxt reads it."""

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

    def start(self):
        """Write the header if there is no file yet."""
        if not os.path.exists(self.path):
            append_line(self.path, self.header)

    def write(self, epoch, train, evaluation, seconds, extra=()):
        """Append the line of this epoch; returns it."""
        self.start()
        text = self.line(epoch, train, evaluation, seconds, extra)
        append_line(self.path, text)
        return text

    def last_row(self, epoch):
        """The values of the last line of ``epoch`` (epoch first), None when there is none."""
        rows = [line.split() for line in read_lines(self.path)
                if line.strip() and not line.startswith("#")]
        rows = [row for row in rows if row[0] == str(epoch)]
        return [float(x) for x in rows[-1]] if rows else None


class EpochLog:
    """Machine-readable per-epoch log: one JSON object per line ({NAME}_log.jsonl), easy to load
    with ``load_epoch_log`` or pandas.read_json(lines=True) and to plot."""

    def __init__(self, path):
        self.path = path

    @staticmethod
    def line(**record):
        return json.dumps(record, default=_json_default)

    def write(self, **record):
        append_line(self.path, self.line(**record))


def load_epoch_log(path):
    """List of per-epoch dicts written by ``EpochLog``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start


class RunInProgressError(RuntimeError):
    """Another run holds the OUT_DIR/NAME of this one."""


class RunLock:
    """``{prefix}.lock``: one run per OUT_DIR/NAME at a time.

    The file is created atomically (``O_CREAT | O_EXCL``) and holds the JSON object {"host",
    "pid", "started"} of the run holding it; ``release`` removes it. A second run raises
    ``RunInProgressError`` naming the folder, the name and the holder. A lock left by a process
    of this host that is no longer alive (a killed run) is taken over with a warning; one of
    another host cannot be checked and blocks until it is deleted by hand.
    Use as a context manager: ``with RunLock(prefix): ...``."""

    def __init__(self, prefix):
        self.path = prefix + ".lock"
        self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = self._holder()
                if not self._is_dead(holder):
                    raise RunInProgressError(self._held_message(holder)) from None
                self._take_over(holder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunInProgressError(self._held_message(self._holder()))

    def release(self):
        if self.held:
            self.held = False
            if os.path.exists(self.path):
                os.unlink(self.path)

    def _holder(self, path=None):
        """The lock's contents; {} when it cannot be read (it may be being written)."""
        try:
            with open(path or self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _is_dead(holder):
        """True for a lock of a process of this host that is no longer alive."""
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:      # alive, another user's
            return False
        return False

    def _take_over(self, holder):
        """Remove the lock of a dead process (renamed aside first, so that a lock another run
        took over in the meantime is put back, not deleted)."""
        aside = f"{self.path}.{uuid.uuid4().hex[:12]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if self._holder(aside) != holder:
            os.rename(aside, self.path)
            return
        os.unlink(aside)
        warnings.warn(f"{self.path}: took over the lock of a run that is no longer alive (host "
                      f"{holder['host']}, PID {holder['pid']}, started {holder.get('started')})",
                      RuntimeWarning, stacklevel=4)

    def _held_message(self, holder):
        folder, name = os.path.split(self.path[:-len(".lock")])
        who = (f"host {holder.get('host')}, PID {holder.get('pid')}, started "
               f"{holder.get('started')}") if holder else "holder unknown (lock unreadable)"
        return (f"another run is using OUT_DIR {folder!r} with NAME {name!r} ({who}; lock file "
                f"{self.path}). Wait for it, choose another NAME or OUT_DIR, or delete the lock "
                "file if that run is dead.")
