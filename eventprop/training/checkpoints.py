"""Checkpoints and parameter files of a run, written atomically.

A checkpoint with label "last" or "best" is one file, ``{prefix}_checkpoint_{label}.npz``: every
parameter, the Adam state, the learning-rate schedule, the epoch, the number of updates, the best
accuracy so far and the epoch's result rows (``results_lines``, ``results_row``, ``log_lines``,
``log_row``: the lines its results and log files had before the epoch's row, and the row). It is
what ``LOAD_LAST`` / ``LOAD_BEST`` resume from, so that a resumed run continues exactly and
puts the rows of its files back to the checkpoint's epoch.

After it, the parameters are exported again as the original's ``.npy`` files
``{prefix}_{stem}_{label}.npy`` (stems in ``parameter_files``), shape (n_pre, n_post) for
weights. These are what analysis scripts read; a run that finds only them (weights of the
original code, for instance) loads them and starts the optimiser afresh. Checkpoints written
before the rows were added load as well (without rows to restore).
"""
import os
import warnings

import numpy as np

from eventprop import storage


def parameter_slots(net, tau_stems=("taum", "tausyn")):
    """File stem -> (parameter name, layer index or None) for every parameter a run saves:
    ``w_input_hidden``, ``w_hidden_output``, ``w_hidden{l}_hidden{l+1}`` (between layers),
    ``w_hidden{l}_hidden{l}`` (recurrent), and the time constants where they differ per neuron or
    are trained: ``{taum}_hidden{l}``, ``{tausyn}_hidden{l}`` (hetLIF or TRAIN_TAU),
    ``{taum}_output``, ``{tausyn}_output`` (hetLI or TRAIN_TAU_OUTPUT). Checkpoints use the stems
    taum / tausyn, snapshots tau_m / tau_syn (the original's names)."""
    slots = {"w_input_hidden": ("w_input_hidden", None),
             "w_hidden_output": ("w_hidden_output", None)}
    for l in range(net.n_layers - 1):
        slots[f"w_hidden{l}_hidden{l + 1}"] = ("w_hidden_hidden_fwd", l)
    if net.recurrent:
        for l in range(net.n_layers):
            slots[f"w_hidden{l}_hidden{l}"] = ("w_hidden_hidden", l)
    taum, tausyn = tau_stems
    if net.hidden_type == "hetLIF" or net.train_tau:
        for l in range(net.n_layers):
            slots[f"{taum}_hidden{l}"] = ("tau_m_hidden", l)
            slots[f"{tausyn}_hidden{l}"] = ("tau_syn_hidden", l)
    if net.output_type == "hetLI" or net.train_tau_output:
        slots[f"{taum}_output"] = ("tau_m_output", None)
        slots[f"{tausyn}_output"] = ("tau_syn_output", None)
    return slots


def parameter_files(net, tau_stems=("taum", "tausyn")):
    """File stem -> array (see ``parameter_slots``)."""
    return {stem: net.params[name] if l is None else net.params[name][l]
            for stem, (name, l) in parameter_slots(net, tau_stems).items()}


def save_parameters(net, prefix, suffix, tau_stems=("taum", "tausyn")):
    """Every array of ``parameter_files`` as ``{prefix}_{stem}_{suffix}.npy``."""
    for stem, array in parameter_files(net, tau_stems).items():
        storage.save_npy(f"{prefix}_{stem}_{suffix}.npy", array)


def checkpoint_path(prefix, label):
    return f"{prefix}_checkpoint_{label}.npz"


ROW_FILES = ("results", "log")


class Resumed:
    """What a loaded checkpoint says: the ``epoch`` it holds (-1 for weights only), the ``best``
    accuracy so far and ``rows``: file ("results", "log") -> (lines before the epoch's row, the
    row); empty for checkpoints without rows."""

    def __init__(self, epoch, best, rows):
        self.epoch, self.best, self.rows = epoch, best, rows


def save_checkpoint(prefix, label, trainer, schedule, epoch, best, rows):
    """Checkpoint ``label`` of the state after ``epoch``; ``best`` = best accuracy so far;
    ``rows`` = file ("results", "log") -> (lines before this epoch's row, the row). The
    checkpoint file is written first, the ``.npy`` exports after it."""
    net = trainer.net
    state = {f"param/{k}": v for k, v in net.params.items()}
    state.update(trainer.adam.state())
    state.update(schedule.state())
    state.update(epoch=np.array(epoch), n_updates=np.array(trainer.n_updates),
                 best=np.array(best))
    for name, (n_before, row) in rows.items():
        state[f"{name}_lines"] = np.array(n_before)
        state[f"{name}_row"] = np.array(row)
    storage.save_npz(checkpoint_path(prefix, label), state)
    save_parameters(net, prefix, label)


def _has_parameter_files(prefix, label):
    return all(os.path.exists(f"{prefix}_{stem}_{label}.npy")
               for stem in ("w_input_hidden", "w_hidden_output"))


def check_checkpoint_exists(prefix, label):
    """FileNotFoundError naming the file when there is neither checkpoint ``label`` nor its
    .npy weight files."""
    path = checkpoint_path(prefix, label)
    if not (os.path.exists(path) or _has_parameter_files(prefix, label)):
        raise FileNotFoundError(f"no checkpoint {path} (written by a run with CHECKPOINT and the "
                                "same OUT_DIR and NAME, or CHECKPOINT_NAME)")


def _load_parameter_files(net, prefix, label):
    """Parameters from the .npy files that exist (flat arrays of the right size are accepted)."""
    params = {k: v.copy() for k, v in net.params.items()}
    missing = []
    for stem, (name, l) in parameter_slots(net).items():
        path = f"{prefix}_{stem}_{label}.npy"
        if not os.path.exists(path):
            missing.append(os.path.basename(path))
            continue
        target = params[name] if l is None else params[name][l]
        value = np.load(path)
        if value.size != target.size:
            raise ValueError(f"{path} has {value.size} values; this network needs "
                             f"{target.size} (shape {target.shape})")
        target[...] = value.reshape(target.shape)
    if missing:
        warnings.warn(f"no {', '.join(missing)}: these parameters keep their initial values",
                      RuntimeWarning, stacklevel=3)
    return params


def load_checkpoint(prefix, label, trainer, schedule, weights_only=False):
    """Restore checkpoint ``label``: parameters, and unless ``weights_only`` the optimiser and
    schedule state. Returns ``Resumed``; its epoch is -1 when only the .npy parameter files
    exist. Raises FileNotFoundError naming the file when there is none, ValueError when a shape
    does not fit the network."""
    check_checkpoint_exists(prefix, label)
    net = trainer.net
    path = checkpoint_path(prefix, label)
    if not os.path.exists(path):
        net.set_params(_load_parameter_files(net, prefix, label))
        if not weights_only:
            warnings.warn(f"{path} not found: loaded the weights of {prefix}_*_{label}.npy; the "
                          "optimiser and learning rate start afresh from epoch 0",
                          RuntimeWarning, stacklevel=2)
        return Resumed(-1, -1.0, {})
    with np.load(path) as f:
        state = dict(f)
    try:
        net.set_params({k[6:]: v for k, v in state.items() if k.startswith("param/")})
    except ValueError as error:
        raise ValueError(f"{path} does not fit this network: {error}") from None
    rows = {name: (int(state[f"{name}_lines"]), str(state[f"{name}_row"]))
            for name in ROW_FILES if f"{name}_row" in state}
    resumed = Resumed(int(state["epoch"]), float(state["best"]), rows)
    if not weights_only:
        trainer.adam.load_state(state)
        trainer.n_updates = int(state["n_updates"])
        schedule.load_state(state)
    return resumed
