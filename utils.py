"""What the simulators share: parameter validation, Adam, learning-rate schedules, and files
(results, per-epoch logs, weights, checkpoints), all written atomically."""
import difflib
import json
import math
import os
import tempfile
import time

import numpy as np


# ----------------------------------------------------------------------------------------------
# Parameter dictionaries
# ----------------------------------------------------------------------------------------------

def check_params(p, defaults, rules, where="p"):
    """Fill missing keys from ``defaults`` and validate.

    Raises KeyError naming an unknown key and its closest valid spellings, and ValueError naming
    a key whose value breaks its rule. ``rules`` maps a key to a function value -> error message
    (or None when valid). Returns a new dict.
    """
    unknown = [k for k in p if k not in defaults]
    if unknown:
        lines = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(defaults), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            lines.append(f"unknown parameter {k!r} in {where}{hint}")
        raise KeyError("; ".join(lines))
    full = dict(defaults)
    full.update(p)
    for key, rule in rules.items():
        message = rule(full[key], full)
        if message:
            raise ValueError(f"invalid {where}[{key!r}] = {full[key]!r}: {message}")
    return full


def positive(value, p=None):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not value > 0 or not math.isfinite(value):
        return "must be a positive number"


def non_negative(value, p=None):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not value >= 0 or not math.isfinite(value):
        return "must be a non-negative number"


def number(value, p=None):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not math.isfinite(value):
        return "must be a finite number"


def probability(value, p=None):
    if non_negative(value) or value >= 1:
        return "must be a probability in [0, 1)"


def integer_at_least(minimum):
    def rule(value, p=None):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            return f"must be an integer >= {minimum}"
    return rule


def one_of(*choices):
    def rule(value, p=None):
        if value not in choices:
            return f"must be one of {', '.join(repr(c) for c in choices)}"
    return rule


def boolean(value, p=None):
    if not isinstance(value, (bool, np.bool_)):
        return "must be True or False"


def optional_seed(value, p=None):
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                              or value < 0):
        return "must be None or a non-negative integer"


def string(value, p=None):
    if not isinstance(value, str):
        return "must be a string"


def optional_string(value, p=None):
    if value is not None and not isinstance(value, str):
        return "must be None or a string"


def anything(value, p=None):
    """For keys accepted for compatibility with the original's scripts and not used."""
    return None


def optional_class_list(value, p=None):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or any(
            not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 0 for c in value) \
            or len(set(value)) != len(value):
        return "must be None or a list of distinct class numbers"


def list_of_pairs(value, p=None):
    if not isinstance(value, (list, tuple)) or any(
            not isinstance(x, (list, tuple)) or len(x) != 2 for x in value):
        return "must be a list of [epoch, trial] pairs"


def fold_list(value, p):
    """FOLDS: None, or a list of distinct fold indices below N_FOLDS."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or len(set(value)) != len(value) or \
            any(not isinstance(f, (int, np.integer)) or isinstance(f, bool) or
                not 0 <= f < p["N_FOLDS"] for f in value):
        return f"must be None or a list of distinct fold indices in [0, N_FOLDS = {p['N_FOLDS']})"


def list_of(kind):
    def rule(value, p=None):
        if not isinstance(value, (list, tuple)) or any(not isinstance(x, kind) for x in value):
            return f"must be a list of {kind.__name__}"
    return rule


# ----------------------------------------------------------------------------------------------
# Optimiser and schedules
# ----------------------------------------------------------------------------------------------

class Adam:
    """Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    theta <- theta - eta m_hat / (sqrt(v_hat) + eps), bias-corrected with the step count t >= 1."""

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m, self.v = {}, {}
        self.t = 0

    def step(self, params, grads, eta, names):
        """One update of params[name] for every name in ``names`` (in place)."""
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for name in names:
            g = grads[name]
            if name not in self.m:
                self.m[name] = np.zeros_like(g)
                self.v[name] = np.zeros_like(g)
            m, v = self.m[name], self.v[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            params[name] -= (eta * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(
                params[name].dtype)

    def state(self):
        """Arrays and step count, for checkpoints."""
        state = {"adam_t": np.array(self.t)}
        state.update({f"adam_m/{k}": v for k, v in self.m.items()})
        state.update({f"adam_v/{k}": v for k, v in self.v.items()})
        return state

    def load_state(self, state):
        self.t = int(state["adam_t"])
        self.m = {k[7:]: np.array(v) for k, v in state.items() if k.startswith("adam_m/")}
        self.v = {k[7:]: np.array(v) for k, v in state.items() if k.startswith("adam_v/")}


class ExponentialDecay:
    """Yin-Yang learning rate: rate x ``decay`` at the start of every epoch (also the
    first, so epoch e uses eta * decay^(e+1))."""

    def __init__(self, eta, decay):
        self.rate = eta
        self.decay = decay

    def start_epoch(self):
        self.rate *= self.decay

    def after_trial(self):
        pass

    def end_of_epoch(self, epoch, accuracy):
        return False

    def state(self):
        return {"lr_rate": np.array(self.rate)}

    def load_state(self, state):
        self.rate = float(state["lr_rate"])


class LearningRateSchedule:
    """SHD/SSC learning rate.

    Ease-in: the effective rate starts at target / 1000 when a run starts and is multiplied by
    ``ease_in_factor`` after every trial, training or evaluation, until it reaches the target.
    Plateau: at the end of every epoch, with accuracy a (validation, or training, as chosen by the
    caller), E1 <- alpha1 E1 + (1 - alpha1) a and E2 <- alpha2 E2 + (1 - alpha2) a (both from 0);
    when more than ``min_epochs_fixed`` epochs have passed since the last reduction and E1 <= E2,
    the target is multiplied by ``factor`` and the effective rate jumps to it.

    A resumed run continues with the saved effective rate (the original restarts the ease-in)."""

    def __init__(self, eta, ease_in_factor=1.05, alpha1=0.8, alpha2=0.95, factor=0.5,
                 min_epochs_fixed=300):
        self.target = eta
        self.rate = eta / 1000.0
        self.ease_in_factor = ease_in_factor
        self.alpha1, self.alpha2 = alpha1, alpha2
        self.factor = factor
        self.min_epochs_fixed = min_epochs_fixed
        self.ema1 = self.ema2 = 0.0
        self.last_reduction = 0

    def start_epoch(self):
        pass

    def after_trial(self):
        """Ease-in step; returns the rate for the next trial."""
        self.rate = min(self.rate * self.ease_in_factor, self.target)
        return self.rate

    def end_of_epoch(self, epoch, accuracy):
        """EMA plateau test; returns True when the target was reduced."""
        self.ema1 = self.alpha1 * self.ema1 + (1.0 - self.alpha1) * accuracy
        self.ema2 = self.alpha2 * self.ema2 + (1.0 - self.alpha2) * accuracy
        if epoch - self.last_reduction > self.min_epochs_fixed and self.ema1 <= self.ema2:
            self.target *= self.factor
            self.rate = self.target
            self.last_reduction = epoch
            return True
        return False

    def state(self):
        """Everything a checkpoint needs to continue exactly."""
        return {"lr_rate": np.array(self.rate), "lr_target": np.array(self.target),
                "lr_ema1": np.array(self.ema1), "lr_ema2": np.array(self.ema2),
                "lr_last_reduction": np.array(self.last_reduction)}

    def load_state(self, state):
        self.rate = float(state["lr_rate"])
        self.target = float(state["lr_target"])
        self.ema1 = float(state["lr_ema1"])
        self.ema2 = float(state["lr_ema2"])
        self.last_reduction = int(state["lr_last_reduction"])


# ----------------------------------------------------------------------------------------------
# Files, written atomically: write to a temporary file in the same folder, then rename
# ----------------------------------------------------------------------------------------------

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
