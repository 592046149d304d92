"""Figures of runs and sweeps, drawn with matplotlib and saved as PNG and PDF.

Every figure function takes file prefixes (``OUT_DIR/NAME``) or data already loaded, and an output
path stem ``out``; it writes ``out.png`` and ``out.pdf`` and returns the
``matplotlib.figure.Figure``.
``draw_all(folder)`` draws every figure of every run found under a folder, and so does the command

    python figures.py FOLDER [--out DIR]

The functions build ``Figure`` objects directly, without pyplot, so importing this module changes
no global matplotlib state and works on machines without a display.
"""
import argparse
import csv
import glob
import json
import math
import os
import sys
import warnings

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


# Parameters that tell runs of one parameter set apart: seeds, folds (SHD's left-out speaker, the
# k-fold index of the other benchmarks), names and folders. Runs whose parameter files agree on
# every other key are drawn together by ``draw_all``.
SEED_KEYS = ("MODEL_SEED", "TRAIN_DATA_SEED", "SPEAKER_LEFT", "FOLDS", "NAME", "OUT_DIR")

RESULTS_SUFFIX = "_results.txt"
DPI = 150
POPULATION_ORDER = ("input", "hidden", "hidden0", "hidden1", "hidden2", "hidden3", "output")


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

def run_prefix(path):
    """The prefix ``OUT_DIR/NAME`` of a run from the prefix itself or the path of one of its
    result files (``_results.txt``, ``_log.jsonl``, ``.json``)."""
    path = os.fspath(path)
    for suffix in (RESULTS_SUFFIX, "_log.jsonl", ".json"):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def _keep_last_pass(epochs):
    """Indices of the rows to keep when a file was appended to by several calls: a row whose epoch
    is not above the previous row's starts a new pass and replaces the rows of the same and later
    epochs (a resumed run repeats at most its last epoch; a fresh run starts again at 0)."""
    kept = []
    for i, e in enumerate(epochs):
        if kept and e <= epochs[kept[-1]]:
            kept = [j for j in kept if epochs[j] < e]
        kept.append(i)
    return kept


def _damaged(path, number, why):
    """Warn that line ``number`` of the file ``path`` is skipped, and why."""
    warnings.warn(f"{path}, line {number}: {why}; the line is skipped", RuntimeWarning,
                  stacklevel=3)


def load_results(path):
    """``{NAME}_results.txt`` as a dict: column name (from the '#' header) -> 1-D array, one
    value per epoch. When several calls appended to the file, the rows of the last pass over each
    epoch are kept (see ``_keep_last_pass``). A damaged row (not numbers, or not one per column)
    is skipped with a warning naming the file and the line."""
    with open(path) as f:
        lines = [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]
    header = [line for _, line in lines if line.startswith("#")]
    if header:
        names = header[0].lstrip("#").split()
    else:
        names = ["epoch", "train_acc", "train_loss", "eval_acc", "eval_loss", "seconds"]
    rows = []
    for number, line in lines:
        if line.startswith("#"):
            continue
        try:
            row = [float(x) for x in line.split()]
        except ValueError:
            _damaged(path, number, "not a row of numbers")
            continue
        if len(row) != len(names):
            _damaged(path, number, f"{len(row)} values for the {len(names)} columns")
            continue
        rows.append(row)
    data = np.array(rows, dtype=float).reshape(len(rows), len(names))
    data = data[_keep_last_pass(list(data[:, 0]))] if len(data) else data
    table = {name: data[:, i] for i, name in enumerate(names)}
    if "epoch" in table:
        table["epoch"] = table["epoch"].astype(int)
    return table


def load_log(path):
    """``{NAME}_log.jsonl`` as a list of per-epoch dicts (the last pass over each epoch). A
    damaged line (not a JSON object) is skipped with a warning naming the file and the line."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                _damaged(path, number, f"not JSON ({error})")
                continue
            if not isinstance(record, dict):
                _damaged(path, number, "not a JSON object")
                continue
            records.append(record)
    return [records[i] for i in _keep_last_pass([r.get("epoch", i) for i, r in
                                                 enumerate(records)])]


def load_run(prefix):
    """Everything ``figures`` reads about one run, from its prefix ``OUT_DIR/NAME`` (or the path
    of its results file). Returns a dict:

    * ``prefix``, ``name``;
    * ``results``: dict column -> array from ``{NAME}_results.txt`` (None if missing);
    * ``log``: list of per-epoch dicts from ``{NAME}_log.jsonl`` ([] if missing);
    * ``p``: the parameter dict from ``{NAME}.json`` (None if missing);
    * ``eval_name``: what the evaluation part is called in the log ("test", "validation",
      "eval"; "eval" when the log does not say).
    """
    prefix = run_prefix(prefix)
    run = {"prefix": prefix, "name": os.path.basename(prefix), "results": None, "log": [],
           "p": None}
    if os.path.exists(prefix + RESULTS_SUFFIX):
        run["results"] = load_results(prefix + RESULTS_SUFFIX)
    if os.path.exists(prefix + "_log.jsonl"):
        run["log"] = load_log(prefix + "_log.jsonl")
    if os.path.exists(prefix + ".json"):
        with open(prefix + ".json") as f:
            run["p"] = json.load(f)
    run["eval_name"] = _eval_name(run["log"])
    if run["results"] is None and not run["log"] and run["p"] is None:
        raise FileNotFoundError(f"no result files with prefix {prefix!r} "
                                f"({prefix}{RESULTS_SUFFIX}, {prefix}_log.jsonl, {prefix}.json)")
    return run


def _eval_name(log):
    for record in log:
        for key in record:
            if key.endswith("_acc") and key != "train_acc":
                return key[:-len("_acc")]
    return "eval"


def _as_run(x):
    return x if isinstance(x, dict) and "prefix" in x else load_run(x)


def _p_value(prefix, key, default=None):
    path = run_prefix(prefix) + ".json"
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f).get(key, default)
    return default


def read_summary(path):
    """A sweep summary CSV as a list of dicts; values are parsed as JSON where they can be
    (numbers, true/false, lists, null), otherwise kept as strings."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: _parse(v) for k, v in row.items() if k is not None} for row in rows]


def _parse(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False, "None": None, "": None}.get(text, text)


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------

def _new_figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def save(fig, out):
    """Write ``out.png`` and ``out.pdf`` (folders made as needed); returns the figure."""
    out = os.fspath(out)
    for ext in (".png", ".pdf"):
        if out.endswith(ext):
            out = out[:-len(ext)]
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out + ".png", dpi=DPI)
    fig.savefig(out + ".pdf")
    return fig


def _empty_note(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------

def _part_ran(run, part):
    """Whether the training ("train") or evaluation ("eval") part ran in this run: the log has
    its keys, or (without a log) its results columns are not all 0."""
    if run["log"]:
        name = "train" if part == "train" else run["eval_name"]
        return any(f"{name}_acc" in r for r in run["log"])
    res = run["results"]
    return bool(np.any(res[f"{part}_acc"] != 0) or np.any(res[f"{part}_loss"] != 0))


def training_curves(prefixes, out, label=None):
    """Accuracy (%) and loss per epoch of the training and evaluation parts, mean over the runs
    given, with a band of ± one standard deviation when there are several. ``prefixes``: one run
    prefix or a list of them (or dicts from ``load_run``). Runs of different length are drawn on
    the epochs they all have. Epochs are counted from 1."""
    if isinstance(prefixes, (str, os.PathLike, dict)):
        prefixes = [prefixes]
    runs = [_as_run(x) for x in prefixes]
    runs = [r for r in runs if r["results"] is not None and len(r["results"]["epoch"])]
    fig = _new_figure(9, 3.6)
    ax_acc, ax_loss = fig.subplots(1, 2)
    if not runs:
        for ax in (ax_acc, ax_loss):
            _empty_note(ax, "no epochs")
        return save(fig, out)
    common = set(runs[0]["results"]["epoch"].tolist())
    for r in runs[1:]:
        common &= set(r["results"]["epoch"].tolist())
    epochs = np.array(sorted(common), dtype=int)
    eval_names = sorted({r["eval_name"] for r in runs})
    styles = {"train": ("train", "C0"), "eval": ("/".join(eval_names), "C1")}
    for part, (name, colour) in styles.items():
        ran = [r for r in runs if _part_ran(r, part)]
        if not ran or not len(epochs):
            continue
        for ax, column, scale in ((ax_acc, f"{part}_acc", 100.0), (ax_loss, f"{part}_loss", 1.0)):
            values = np.stack([_on_epochs(r["results"], column, epochs) for r in ran]) * scale
            mean = values.mean(axis=0)
            ax.plot(epochs + 1, mean, color=colour, label=f"{name} (n={len(ran)})"
                    if len(runs) > 1 else name, marker="." if len(epochs) < 30 else None)
            if len(ran) > 1:
                std = values.std(axis=0)
                ax.fill_between(epochs + 1, mean - std, mean + std, color=colour, alpha=0.25,
                                linewidth=0)
    ax_acc.set_ylabel("accuracy (%)")
    ax_loss.set_ylabel("loss")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if label is None:
        label = runs[0]["name"] if len(runs) == 1 else f"{len(runs)} runs"
    band = ", mean ± std" if len(runs) > 1 else ""
    fig.suptitle(f"{label}{band}")
    return save(fig, out)


def _on_epochs(results, column, epochs):
    index = {e: i for i, e in enumerate(results["epoch"].tolist())}
    return np.array([results[column][index[e]] for e in epochs])


# ----------------------------------------------------------------------------------------------
# Accuracy against hidden size
# ----------------------------------------------------------------------------------------------

def _is_parameter_key(key):
    """Parameter names are upper case (``NUM_HIDDEN``, ``LOSS_TYPE``); result columns of a
    summary (accuracies, counts, means and stds) are not."""
    key = str(key)
    return key == key.upper() and any(c.isalpha() for c in key)


def condition_keys_of(table, hidden_key="NUM_HIDDEN"):
    """Parameter keys (upper case) whose values differ between rows of a summary table, other
    than the hidden size and the seed/fold keys (``SEED_KEYS``)."""
    keys = []
    for row in table:
        for k in row:
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        if k == hidden_key or k in SEED_KEYS or not _is_parameter_key(k):
            continue
        values = {json.dumps(row.get(k), sort_keys=True, default=str) for row in table}
        if len(values) > 1:
            out.append(k)
    return out


def _number(x):
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _mean_std(rows, key):
    """Mean and std of ``key`` over rows: a row with ``{key}_mean`` (and ``{key}_std``) gives
    them directly (one such row per point); otherwise ``key`` of every row is averaged."""
    base = key[:-len("_mean")] if key.endswith("_mean") else key
    means = [_number(r.get(base + "_mean")) for r in rows]
    if all(m is not None for m in means) and means:
        stds = [_number(r.get(base + "_std")) or 0.0 for r in rows]
        if len(rows) == 1:
            return means[0], stds[0]
        return float(np.mean(means)), float(np.std(means))
    values = [v for v in (_number(r.get(key)) for r in rows) if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def _value_text(v):
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def accuracy_vs_hidden(table, out, condition_keys=None, hidden_key="NUM_HIDDEN",
                       accuracy_key="final_eval_acc"):
    """The paper's summary plot: accuracy against the number of hidden neurons (x on a log2
    scale), one line with error bars (± std) per condition.

    ``table``: list of dicts, one per run or per parameter set, holding ``hidden_key``, the
    condition keys and ``accuracy_key``; rows of one condition and hidden size are averaged, or,
    where a row has ``{accuracy_key}_mean`` and ``{accuracy_key}_std``, those are used.
    ``accuracy_key``: one key or a list of keys, one panel each. ``condition_keys``: the keys that
    define a condition (None: every key that varies, see ``condition_keys_of``). Accuracies in
    [0, 1] are shown in %."""
    if isinstance(table, (str, os.PathLike)):
        table = read_summary(table)
    table = [row for row in table if _number(row.get(hidden_key)) is not None]
    keys = [accuracy_key] if isinstance(accuracy_key, str) else list(accuracy_key)
    if condition_keys is None:
        condition_keys = condition_keys_of(table, hidden_key)
    elif isinstance(condition_keys, str):
        condition_keys = [condition_keys]
    groups = {}
    for row in table:
        cond = tuple(json.dumps(row.get(k), sort_keys=True, default=str) for k in condition_keys)
        groups.setdefault(cond, {}).setdefault(_number(row[hidden_key]), []).append(row)
    fig = _new_figure(4.8 * len(keys) + (2.2 if len(groups) > 1 else 0.0), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        points = {c: sorted((h, *_mean_std(rows, key)) for h, rows in g.items())
                  for c, g in groups.items()}
        all_means = [m for pts in points.values() for _, m, _ in pts if m is not None]
        scale = 100.0 if all_means and max(all_means) <= 1.0 and min(all_means) >= 0.0 else 1.0
        sizes = set()
        for i, (cond, pts) in enumerate(points.items()):
            pts = [x for x in pts if x[1] is not None]
            if not pts:
                continue
            h, m, s = (np.array(v, dtype=float) for v in zip(*pts))
            sizes.update(h.tolist())
            dodge = 2.0 ** (0.03 * (i - (len(points) - 1) / 2))  # keep error bars apart
            first = groups[cond][pts[0][0]][0]
            name = ", ".join(f"{k}={_value_text(first.get(k))}" for k in condition_keys) \
                or None
            ax.errorbar(h * dodge, m * scale, yerr=s * scale, marker="o", capsize=3, label=name,
                        color=f"C{i % 10}")
        if not sizes:
            _empty_note(ax, f"no values of {key}")
            continue
        ax.set_xscale("log", base=2)
        ticks = sorted(sizes)
        ax.set_xticks(ticks)
        ax.set_xticklabels([_value_text(t) for t in ticks])
        ax.minorticks_off()
        if len(ticks) == 1:
            ax.set_xlim(ticks[0] / 1.5, ticks[0] * 1.5)
        ax.set_xlabel(hidden_key)
        ax.set_ylabel(f"{key} (%)" if scale == 100.0 else key)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if len(groups) > 1 and labels:
        axes[-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5),
                        fontsize="small")
    return save(fig, out)


# ----------------------------------------------------------------------------------------------
# Recordings: spike rasters and state traces
# ----------------------------------------------------------------------------------------------

def recorded_populations(prefix):
    """Populations with spike recordings ``{prefix}_{pop}_spike_t.npy``, in network order."""
    prefix = run_prefix(prefix)
    found = [os.path.basename(f)[len(os.path.basename(prefix)) + 1:-len("_spike_t.npy")]
             for f in glob.glob(glob.escape(prefix) + "_*_spike_t.npy")]
    found = [f for f in found if os.path.exists(f"{prefix}_{f}_spike_ID.npy")]
    order = {pop: i for i, pop in enumerate(POPULATION_ORDER)}
    return sorted(found, key=lambda pop: (order.get(pop, len(order)), pop))


def recorded_variables(prefix):
    """State recordings ``{prefix}_{var}{pop}.npy`` (e.g. "Voutput", "Ihidden0") of a run."""
    prefix = run_prefix(prefix)
    base = os.path.basename(prefix)
    out = []
    for f in sorted(glob.glob(glob.escape(prefix) + "_*.npy")):
        var = os.path.basename(f)[len(base) + 1:-len(".npy")]
        if var[:1] in ("V", "I") and var[1:].startswith(("hidden", "output")):
            out.append(var)
    return out


def _n_recorded_samples(prefix, times, trial_ms):
    labels = run_prefix(prefix) + "_rec_labels.npy"
    if os.path.exists(labels):
        return len(np.load(labels))
    t_max = max((t.max() for t in times if len(t)), default=0.0)
    return int(t_max // trial_ms) + 1


def _samples_list(samples, n, with_spikes):
    """Indices of the samples to draw: the first ``samples`` of those with spikes (an int), or
    the indices given that were recorded."""
    if samples is None:
        samples = 4
    if isinstance(samples, (int, np.integer)):
        return [int(s) for s in with_spikes if s < n][:int(samples)]
    return [int(s) for s in samples if 0 <= int(s) < n]


def spike_raster(prefix, out, populations=None, samples=None, trial_ms=None):
    """Spike rasters of recorded samples, one panel per population (input at the top, output at
    the bottom). ``populations``: names as in the file names (default: every population with
    recorded spikes); ``samples``: how many samples to show (the first ones with spikes), or a
    list of sample indices (default: 4). The samples are drawn side by side, each ``TRIAL_MS``
    long (from the run's parameter file unless ``trial_ms`` is given), with its label above it
    where ``{NAME}_rec_labels.npy`` exists."""
    prefix = run_prefix(prefix)
    default = populations is None
    if default:
        populations = recorded_populations(prefix)
    elif isinstance(populations, str):
        populations = [populations]
    data = {pop: (np.load(f"{prefix}_{pop}_spike_t.npy"), np.load(f"{prefix}_{pop}_spike_ID.npy"))
            for pop in populations}
    if default:     # leave out populations without a single spike (LI outputs)
        populations = [pop for pop in populations if len(data[pop][0])]
        data = {pop: data[pop] for pop in populations}
    if not populations:
        raise FileNotFoundError(f"no spikes recorded in {prefix}_<pop>_spike_t.npy")
    trial_ms = trial_ms or _p_value(prefix, "TRIAL_MS")
    if trial_ms is None:        # no parameter file: the whole time axis as one piece
        trial_ms = max((t.max() for t, _ in data.values() if len(t)), default=0.0) + 1.0
        n = 1
    else:
        n = _n_recorded_samples(prefix, [t for t, _ in data.values()], trial_ms)
    with_spikes = np.unique(np.concatenate(
        [np.floor(t / trial_ms).astype(int) for t, _ in data.values()] + [np.zeros(0, int)]))
    shown = _samples_list(samples, n, with_spikes)
    labels_file = prefix + "_rec_labels.npy"
    labels = np.load(labels_file) if os.path.exists(labels_file) else None
    sizes = {pop: max(int(ids.max()) + 1 if len(ids) else 1, 1) for pop, (_, ids) in data.items()}
    ratios = [max(1.0, min(4.0, math.log10(sizes[pop]) + 1)) for pop in populations]
    fig = _new_figure(max(6.0, 1.6 * len(shown) + 3), 1.1 * sum(ratios) + 1)
    axes = np.atleast_1d(fig.subplots(len(populations), 1, sharex=True,
                                      gridspec_kw={"height_ratios": ratios}))
    for ax, pop in zip(axes, populations):
        t, ids = data[pop]
        sample = np.floor(t / trial_ms).astype(int)
        mark = 30.0 if sizes[pop] <= 20 else 12.0 if sizes[pop] <= 200 else 4.0
        for j, s in enumerate(shown):
            sel = sample == s
            ax.scatter(t[sel] - s * trial_ms + j * trial_ms, ids[sel], s=mark, marker="|",
                       linewidths=0.8, color="k", rasterized=True)
            if j:
                ax.axvline(j * trial_ms, color="0.6", linewidth=0.6)
        ax.set_ylim(-0.5, sizes[pop] - 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.set_ylabel(f"{pop}\nneuron", fontsize="small")
    axes[0].set_xlim(0, max(len(shown), 1) * trial_ms)
    axes[-1].set_xlabel(f"time (ms); recorded samples side by side, {trial_ms:g} ms each")
    if labels is not None:
        for j, s in enumerate(shown):
            axes[0].text((j + 0.5) * trial_ms, 1.02, f"#{s}: label {labels[s]}",
                         transform=axes[0].get_xaxis_transform(), ha="center", va="bottom",
                         fontsize="small")
    fig.suptitle(f"{os.path.basename(prefix)}: spikes of recorded samples")
    return save(fig, out)


def _threshold(p, pop):
    """The firing threshold to mark on a voltage trace: hidden LIF neurons, and outputs of the
    first-spike losses (which spike); None otherwise."""
    if not p or "V_THRESH" not in p:
        return None
    if pop.startswith("hidden") or str(p.get("LOSS_TYPE", "")).startswith("first_spike"):
        return p["V_THRESH"]
    return None


def voltage_traces(prefix, out, var="Voutput", sample=0, neurons=None, dt=None):
    """Membrane potential (or synaptic current, ``var`` "I...") of selected neurons against time
    in one recorded sample, from ``{NAME}_{var}.npy`` (samples, steps, neurons). ``prefix`` may
    also be such an array. ``neurons``: indices (default: all, at most 10). The time step is
    ``DT_MS`` of the run (or ``dt``). For hidden neurons and spiking outputs the threshold is
    drawn dashed."""
    p = None
    if isinstance(prefix, np.ndarray):
        trace, name = prefix, var
    else:
        prefix = run_prefix(prefix)
        trace = np.load(f"{prefix}_{var}.npy")
        name = os.path.basename(prefix)
        path = prefix + ".json"
        if os.path.exists(path):
            with open(path) as f:
                p = json.load(f)
    if trace.ndim == 2:
        trace = trace[None]
    if not 0 <= sample < trace.shape[0]:
        raise IndexError(f"sample {sample} not recorded: {var} holds {trace.shape[0]} samples")
    if neurons is None:
        neurons = range(min(trace.shape[2], 10))
    neurons = [int(n) for n in np.atleast_1d(neurons)]
    dt = dt or (p or {}).get("DT_MS")
    x = np.arange(trace.shape[1]) * (dt or 1.0)
    fig = _new_figure(7, 3.6)
    ax = fig.subplots()
    for i, n in enumerate(neurons):
        ax.plot(x, trace[sample, :, n], linewidth=1.0, color=f"C{i % 10}", label=f"neuron {n}")
    pop = var[1:]
    threshold = _threshold(p, pop) if var.startswith("V") else None
    if threshold is not None:
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=0.8, label="threshold")
    ax.set_xlabel("time (ms)" if dt else "time step")
    ax.set_ylabel({"V": "membrane potential", "I": "synaptic current"}.get(var[:1], var))
    ax.grid(alpha=0.3)
    if len(neurons) <= 12:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    title = f"{name}: {var}, recorded sample {sample}"
    if isinstance(prefix, str) and os.path.exists(prefix + "_rec_labels.npy"):
        labels = np.load(prefix + "_rec_labels.npy")
        if len(labels) == trace.shape[0]:
            title += f" (label {labels[sample]})"
    fig.suptitle(title)
    return save(fig, out)


# ----------------------------------------------------------------------------------------------
# Confusion matrices
# ----------------------------------------------------------------------------------------------

def confusion_matrix(prefix_or_array, out, epoch=-1, part="eval", normalise=True,
                     class_names=None):
    """Confusion matrix of one epoch: ``{NAME}_confusion_{part}.npy`` (epochs, C, C) or an array
    (epochs, C, C) or (C, C), indexed [prediction, label] as the run writes it. Drawn with the
    true label on x and the prediction on y; with ``normalise`` each label's column is divided
    by its number of samples (fractions of that label). Non-zero cell values are written when
    C <= 20."""
    if isinstance(prefix_or_array, np.ndarray):
        matrices, name = prefix_or_array, "confusion"
    else:
        prefix = run_prefix(prefix_or_array)
        matrices, name = np.load(f"{prefix}_confusion_{part}.npy"), os.path.basename(prefix)
    if matrices.ndim == 2:
        matrices = matrices[None]
    n_epochs = matrices.shape[0]
    index = epoch if epoch >= 0 else n_epochs + epoch
    if not 0 <= index < n_epochs:
        raise IndexError(f"epoch {epoch} not in the confusion file ({n_epochs} epochs)")
    counts = np.asarray(matrices[index], dtype=float)
    C = counts.shape[0]
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else 0.0
    shown = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1) if normalise else counts
    size = min(3.0 + 0.35 * C, 12.0)
    fig = _new_figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", origin="upper", interpolation="nearest",
                      vmin=0, vmax=1 if normalise else None)
    fig.colorbar(image, ax=ax, label="fraction of the label" if normalise else "samples",
                 shrink=0.8)
    if C <= 20:
        limit = 0.5 * (shown.max() if shown.size and shown.max() > 0 else 1.0)
        for y in range(C):
            for x in range(C):
                value = shown[y, x]
                if value == 0:
                    continue
                text = f"{value:.2f}".lstrip("0") if normalise else f"{int(value)}"
                ax.text(x, y, text, ha="center", va="center", fontsize=7 if C > 10 else 8,
                        color="w" if value > limit else "k")
    names = class_names if class_names is not None else [str(i) for i in range(C)]
    step = max(1, C // 20)
    ax.set_xticks(range(0, C, step))
    ax.set_xticklabels(names[::step])
    ax.set_yticks(range(0, C, step))
    ax.set_yticklabels(names[::step])
    ax.set_xlabel("true label")
    ax.set_ylabel("prediction")
    ax.set_title(f"{name}: {part}, epoch {index + 1}/{n_epochs}, "
                 f"accuracy {100 * accuracy:.1f} % of {int(total)} samples", fontsize="medium")
    return save(fig, out)


# ----------------------------------------------------------------------------------------------
# Hidden activity
# ----------------------------------------------------------------------------------------------

def _recorded_hidden_counts(prefix, p):
    """Per hidden population with a spike recording: (spikes per neuron, spikes per sample) over
    the recorded samples with spikes in any population (neurons that never fired count 0)."""
    out = {}
    trial_ms = (p or {}).get("TRIAL_MS")
    n_hidden = (p or {}).get("NUM_HIDDEN")
    if trial_ms is None:
        return out
    pops = recorded_populations(prefix)
    times = {pop: np.load(f"{prefix}_{pop}_spike_t.npy") for pop in pops}
    # samples with spike recordings: those with a spike in any recorded population (other
    # samples may have been recorded for their voltages only)
    samples = np.unique(np.concatenate([np.floor(t / trial_ms).astype(int)
                                        for t in times.values()] + [np.zeros(0, int)]))
    for pop in pops:
        if not pop.startswith("hidden"):
            continue
        t = times[pop]
        ids = np.load(f"{prefix}_{pop}_spike_ID.npy").astype(int)
        n = max(n_hidden or 0, int(ids.max()) + 1 if len(ids) else 1)
        per_neuron = np.bincount(ids, minlength=n)
        per_sample = np.bincount(np.floor(t / trial_ms).astype(int),
                                 minlength=int(samples.max()) + 1 if len(samples) else 0)
        out[pop] = (per_neuron, per_sample[samples])
    return out


def _bins(arrays, most, per_bin):
    """Common histogram bin edges of several arrays of counts: at most ``most`` bins, about
    ``per_bin`` values per bin, and never narrower than 1."""
    values = np.concatenate([np.asarray(a, dtype=float) for a in arrays])
    if not len(values):
        return 5
    lo, hi = float(values.min()), float(values.max())
    n = int(min(most, max(5, len(values) // per_bin), max(1.0, hi - lo + 1)))
    return np.linspace(lo - 0.5, hi + 0.5, n + 1)


def hidden_activity(prefix_or_log, out):
    """Hidden-layer activity of a run.

    Top row, per epoch: hidden spikes per sample (log: training and evaluation part; with
    ``DEBUG_HIDDEN_N`` columns in the results file: per layer mean ± std and min/max of the
    training part) and silent hidden neurons (log, or per layer from the results file).
    Bottom row: histograms of spikes per neuron and spikes per sample over the recorded samples
    when hidden spikes were recorded; otherwise one histogram of the logged spikes per sample
    over the epochs. ``prefix_or_log``: a run prefix, a ``load_run`` dict or a list of log
    records."""
    if isinstance(prefix_or_log, list):
        run = {"prefix": None, "name": "run", "results": None, "log": prefix_or_log, "p": None,
               "eval_name": _eval_name(prefix_or_log)}
    else:
        run = _as_run(prefix_or_log)
    log, res = run["log"], run["results"]
    debug_layers = []
    if res is not None:
        debug_layers = sorted({int(k[6:].split("_")[0]) for k in res
                               if k.startswith("hidden") and k.endswith("_silent")})
    recorded = _recorded_hidden_counts(run["prefix"], run["p"]) if run["prefix"] else {}
    fig = _new_figure(10, 7)
    (ax_sps, ax_silent), (ax_h1, ax_h2) = fig.subplots(2, 2)
    parts = [("train", "C0"), (run["eval_name"], "C1")]
    logged = {}
    for name, colour in parts:
        key = f"{name}_hidden_spikes_per_sample"
        rows = [r for r in log if key in r]
        if rows:
            ep = np.array([r.get("epoch", i) for i, r in enumerate(rows)]) + 1
            values = np.array([r[key] for r in rows], dtype=float)
            logged[name] = values
            ax_sps.plot(ep, values, color=colour, label=f"{name} (log, all layers)")
            silent = [r.get(f"{name}_silent_neurons") for r in rows]
            if all(s is not None for s in silent):
                ax_silent.plot(ep, silent, color=colour, label=f"{name} (log, all layers)")
    for l in debug_layers:
        c = f"hidden{l}_"
        ep = res["epoch"] + 1
        colour = f"C{(l + 2) % 10}"
        mean, std = res[c + "spikes_per_sample_mean"], res[c + "spikes_per_sample_std"]
        ax_sps.plot(ep, mean, color=colour, label=f"layer {l} training, mean ± std, min/max")
        ax_sps.fill_between(ep, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax_sps.plot(ep, res[c + "spikes_per_sample_min"], color=colour, linestyle=":")
        ax_sps.plot(ep, res[c + "spikes_per_sample_max"], color=colour, linestyle=":")
        ax_silent.plot(ep, res[c + "silent"], color=colour, linestyle="--",
                       label=f"layer {l} training")
    for ax, ylabel in ((ax_sps, "hidden spikes per sample"), (ax_silent, "silent hidden neurons")):
        if ax.lines:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            top = max(1.05 * ax.get_ylim()[1], 1.0)
            ax.set_ylim(-0.03 * top, top)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        else:
            _empty_note(ax, f"no {ylabel} logged")
    if recorded:
        neuron_bins = _bins([c[0] for c in recorded.values()], 40, 5)
        sample_bins = _bins([c[1] for c in recorded.values()], 40, 2)
        for i, (pop, (per_neuron, per_sample)) in enumerate(recorded.items()):
            colour = f"C{(i + 2) % 10}"
            ax_h1.hist(per_neuron, bins=neuron_bins, color=colour, alpha=0.6, label=pop)
            ax_h2.hist(per_sample, bins=sample_bins, color=colour, alpha=0.6, label=pop)
        n_samples = len(next(iter(recorded.values()))[1])
        ax_h1.set_xlabel(f"spikes per neuron in {n_samples} recorded samples")
        ax_h2.set_xlabel("spikes per recorded sample")
        for ax in (ax_h1, ax_h2):
            ax.set_ylabel("count")
            ax.legend(fontsize="small")
    elif logged:
        for name, colour in parts:
            if name in logged:
                ax_h1.hist(logged[name], bins=min(30, max(5, len(logged[name]))), color=colour,
                           alpha=0.6, label=name)
        ax_h1.set_xlabel("hidden spikes per sample (one value per epoch)")
        ax_h1.set_ylabel("epochs")
        ax_h1.legend(fontsize="small")
        _empty_note(ax_h2, "no hidden spike recordings:\nno per-neuron counts")
    else:
        _empty_note(ax_h1, "no data")
        _empty_note(ax_h2, "no hidden spike recordings")
    fig.suptitle(f"{run['name']}: hidden activity")
    return save(fig, out)


# ----------------------------------------------------------------------------------------------
# Every figure of a folder
# ----------------------------------------------------------------------------------------------

def find_runs(folder, exclude=None):
    """Prefixes of every run under ``folder`` (every ``*_results.txt``), sorted; files under
    ``exclude`` are skipped."""
    found = glob.glob(os.path.join(glob.escape(os.fspath(folder)), "**", "*" + RESULTS_SUFFIX),
                      recursive=True)
    if exclude is not None:
        ex = os.path.abspath(exclude) + os.sep
        found = [f for f in found if not os.path.abspath(f).startswith(ex)]
    return sorted(run_prefix(f) for f in found)


def parameter_groups(prefixes, ignore=SEED_KEYS):
    """Runs grouped by their parameter files, ignoring the keys in ``ignore``: a list of lists
    of prefixes in the order found (runs without a parameter file are left out)."""
    groups = {}
    for prefix in prefixes:
        path = prefix + ".json"
        if not os.path.exists(path):
            continue
        with open(path) as f:
            p = json.load(f)
        key = json.dumps({k: v for k, v in p.items() if k not in ignore}, sort_keys=True,
                         default=str)
        groups.setdefault(key, []).append(prefix)
    return list(groups.values())


def _group_stem(prefixes, used):
    names = [os.path.basename(p) for p in prefixes]
    common = os.path.commonprefix(names).rstrip("_-. ")
    stem = f"combined_{common}" if common else "combined"
    candidate, k = stem, 1
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}"
    used.add(candidate)
    return candidate


def _accuracy_keys(table):
    keys = set()
    for row in table:
        keys.update(row)
    chosen = [k for k in ("final_eval_acc", "best_eval_acc", "final_test_acc", "best_test_acc",
                          "final_validation_acc", "best_validation_acc")
              if k in keys or k + "_mean" in keys]
    if not chosen:
        chosen = sorted(k for k in keys if k.endswith("_acc") or k.endswith("_acc_mean"))[:2]
    return chosen


def draw_all(folder, out_folder=None):
    """Draw every figure of every run under ``folder`` into ``out_folder`` (default
    ``folder/figures``), keeping the runs' relative folders:

    * per run ``{NAME}_training``; ``{NAME}_confusion_train`` / ``_eval`` where the confusion
      files exist; ``{NAME}_raster`` and ``{NAME}_{var}`` (e.g. ``_Voutput``) where recordings
      exist; ``{NAME}_hidden_activity``;
    * per parameter set with several runs (differing only in ``SEED_KEYS``: seeds, the folds of
      SPEAKER_LEFT or FOLDS, names, folders): ``combined_{common name}_training``, mean ± std
      over those runs;
    * per ``summary.csv`` in the tree: ``accuracy_vs_hidden`` next to where it lies.

    A damaged line of a results or log file is skipped with a warning (``load_results``,
    ``load_log``); a figure that fails is reported with a warning naming its files, and the
    others are still drawn. Returns the
    list of stems written (each as .png and .pdf)."""
    folder = os.fspath(folder)
    out_folder = os.fspath(out_folder) if out_folder is not None else \
        os.path.join(folder, "figures")
    written = []

    def attempt(stem, source, draw, *args, **kwargs):
        """``draw(*args, stem, **kwargs)``; ``source`` (the files it reads) for the warning."""
        try:
            draw(*args, stem, **kwargs)
        except Exception as error:     # one broken file must not stop the other figures
            warnings.warn(f"figure {stem} not drawn from {source}: {type(error).__name__}: "
                          f"{error}", RuntimeWarning, stacklevel=2)
        else:
            written.append(stem)

    prefixes = find_runs(folder, exclude=out_folder)
    for prefix in prefixes:
        rel = os.path.relpath(prefix, folder)
        stem = os.path.join(out_folder, rel)
        attempt(stem + "_training", prefix, training_curves, [prefix])
        for part in ("train", "eval"):
            if os.path.exists(f"{prefix}_confusion_{part}.npy"):
                attempt(f"{stem}_confusion_{part}", prefix, confusion_matrix, prefix, part=part)
        if recorded_populations(prefix):
            attempt(stem + "_raster", prefix, spike_raster, prefix)
        for var in recorded_variables(prefix):
            attempt(f"{stem}_{var}", prefix, voltage_traces, prefix, var=var)
        attempt(stem + "_hidden_activity", prefix, hidden_activity, prefix)
    used = set()
    for group in parameter_groups(prefixes):
        if len(group) < 2:
            continue
        name = _group_stem(group, used)
        attempt(os.path.join(out_folder, name + "_training"), ", ".join(group),
                training_curves, group,
                label=f"{name[len('combined_'):] or 'runs'} ({len(group)} runs)")
    summaries = glob.glob(os.path.join(glob.escape(folder), "**", "summary.csv"), recursive=True)
    for path in sorted(summaries):
        if os.path.abspath(path).startswith(os.path.abspath(out_folder) + os.sep):
            continue
        table = read_summary(path)
        keys = _accuracy_keys(table)
        rel = os.path.relpath(os.path.dirname(path), folder)
        stem = os.path.normpath(os.path.join(out_folder, rel, "accuracy_vs_hidden"))
        if not keys or not any("NUM_HIDDEN" in row for row in table):
            warnings.warn(f"{path}: no NUM_HIDDEN or accuracy column; accuracy_vs_hidden not "
                          "drawn", RuntimeWarning, stacklevel=2)
            continue
        attempt(stem, path, accuracy_vs_hidden, table, accuracy_key=keys)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="eventprop figures", description="Draw every figure of the runs under a folder (PNG and PDF).")
    parser.add_argument("folder", help="folder searched for *_results.txt and summary.csv")
    parser.add_argument("--out", default=None, help="output folder (default: FOLDER/figures)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"no folder {args.folder!r}")
    written = draw_all(args.folder, args.out)
    out = args.out or os.path.join(args.folder, "figures")
    print(f"{len(written)} figures (.png and .pdf) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
