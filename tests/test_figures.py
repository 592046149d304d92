"""Figures from result files written with the project's own writers (storage.ResultsFile, EpochLog,
save_json, save_npy) in the layout of a run (experiment.Experiment, simulation.Recorder)."""
import csv
import os
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from eventprop.tools import figures
from eventprop import storage
from eventprop.training.experiment import Experiment

N_CLASSES = 4
TRIAL_MS = 50.0
DT_MS = 1.0
N_INPUT, N_HIDDEN = 30, 16


def base_p(**kw):
    p = {"OUT_DIR": ".", "NAME": "run", "MODEL_SEED": 1, "TRAIN_DATA_SEED": 123,
         "NUM_HIDDEN": N_HIDDEN, "N_HID_LAYER": 2, "LOSS_TYPE": "sum", "TRIAL_MS": TRIAL_MS,
         "DT_MS": DT_MS, "V_THRESH": 1.0, "N_EPOCH": 4, "DEBUG_HIDDEN_N": True}
    p.update(kw)
    return p


def write_run(folder, p, n_epochs, seed=0, log=True, recordings=True, confusion=True,
              eval_name="validation"):
    """Every file of a run of ``n_epochs`` epochs with plausible numbers; returns the prefix."""
    rng = np.random.default_rng(seed)
    prefix = os.path.join(str(folder), p["NAME"])
    storage.save_json(prefix + ".json", dict(p, OUT_DIR=str(folder)))
    n_layers = p.get("N_HID_LAYER", 1)
    columns = Experiment._debug_columns(p, SimpleNamespace(n_layers=n_layers))
    results = storage.ResultsFile(prefix + "_results.txt", columns)
    epoch_log = storage.EpochLog(prefix + "_log.jsonl")
    for epoch in range(n_epochs):
        acc = min(0.95, 0.3 + 0.15 * epoch + 0.05 * rng.random())
        train = SimpleNamespace(accuracy=acc, mean_loss=2.0 - acc)
        evaluation = SimpleNamespace(accuracy=acc - 0.05, mean_loss=2.1 - acc)
        extra = []
        for _ in range(n_layers):
            mean = 20 + 5 * rng.random()
            extra += [mean, 3.0, mean - 6, mean + 7, 40.0, 10.0, 0.0, 70.0, float(epoch % 3)]
        results.write(epoch, train, evaluation, 1.5 * (epoch + 1), extra)
        if log:
            epoch_log.write(epoch=epoch, eta=1e-3, seconds=1.5 * (epoch + 1),
                            train_acc=acc, train_loss=2.0 - acc,
                            train_hidden_spikes_per_sample=40.0 + epoch,
                            train_silent_neurons=epoch % 3,
                            **{f"{eval_name}_acc": acc - 0.05, f"{eval_name}_loss": 2.1 - acc,
                               f"{eval_name}_hidden_spikes_per_sample": 38.0 + epoch,
                               f"{eval_name}_silent_neurons": 1},
                            n_unstored_spikes=0)
    if confusion:
        for part in ("train", "eval"):
            m = rng.integers(0, 5, (n_epochs, N_CLASSES, N_CLASSES))
            m[:, np.arange(N_CLASSES), np.arange(N_CLASSES)] += 20
            storage.save_npy(f"{prefix}_confusion_{part}.npy", m)
    if recordings:
        n_samples = 6
        sizes = {"input": N_INPUT, "hidden0": N_HIDDEN, "hidden1": N_HIDDEN, "output": N_CLASSES}
        for pop, n in sizes.items():
            t, ids = [], []
            for s in range(n_samples):
                k = int(rng.integers(5, 40))
                t.append(s * TRIAL_MS + np.sort(rng.integers(0, int(TRIAL_MS), k)) * DT_MS)
                ids.append(rng.integers(0, n, k))
            storage.save_npy(f"{prefix}_{pop}_spike_t.npy", np.concatenate(t))
            storage.save_npy(f"{prefix}_{pop}_spike_ID.npy", np.concatenate(ids).astype(np.int64))
        steps = int(TRIAL_MS / DT_MS)
        rise = np.linspace(0, 1.2, steps)[None, :, None]
        storage.save_npy(f"{prefix}_Vhidden0.npy",
                       (rise * rng.random((n_samples, 1, N_HIDDEN))) % 1.0)
        storage.save_npy(f"{prefix}_Voutput.npy", rise * rng.random((n_samples, 1, N_CLASSES)))
        storage.save_npy(f"{prefix}_rec_labels.npy", rng.integers(0, N_CLASSES, n_samples))
    return prefix


def assert_drawn(stem, fig=None):
    if fig is not None:
        assert isinstance(fig, Figure)
    for ext in (".png", ".pdf"):
        assert os.path.getsize(str(stem) + ext) > 0, ext
    image = imread(str(stem) + ".png")
    assert image.ndim == 3 and image[..., :3].std() > 0      # not a blank image


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of one condition (4 and 3 epochs), a second condition, and a run with only a
    results file (no log, no parameters, no recordings, no confusion files)."""
    folder = tmp_path_factory.mktemp("runs")
    a1 = write_run(folder / "sweep", base_p(NAME="a_seed1", MODEL_SEED=1), 4, seed=1)
    a2 = write_run(folder / "sweep", base_p(NAME="a_seed2", MODEL_SEED=2), 3, seed=2)
    b = write_run(folder / "sweep", base_p(NAME="b_seed1", NUM_HIDDEN=32), 3, seed=3,
                  recordings=False)
    bare = os.path.join(str(folder), "bare")
    results = storage.ResultsFile(bare + "_results.txt")
    for epoch in range(3):
        results.write(epoch, SimpleNamespace(accuracy=0.5 + 0.1 * epoch, mean_loss=1.0),
                      None, float(epoch))
    return SimpleNamespace(folder=folder, a1=a1, a2=a2, b=b, bare=bare)


def test_load_run_reads_every_file(runs):
    run = figures.load_run(runs.a1 + "_results.txt")
    res = run["results"]
    assert list(res["epoch"]) == [0, 1, 2, 3]
    assert "hidden1_spikes_per_neuron_max" in res and len(res["hidden0_silent"]) == 4
    assert run["p"]["MODEL_SEED"] == 1 and len(run["log"]) == 4
    assert run["eval_name"] == "validation"
    bare = figures.load_run(runs.bare)
    assert bare["p"] is None and bare["log"] == [] and list(bare["results"]["eval_acc"]) == [0] * 3
    with pytest.raises(FileNotFoundError):
        figures.load_run(os.path.join(str(runs.folder), "missing"))


def test_appended_runs_keep_the_last_pass(tmp_path):
    """A resumed run repeats its last epoch; a fresh call appends a new pass from epoch 0."""
    results = storage.ResultsFile(str(tmp_path / "r_results.txt"))
    for epoch, acc in [(0, .1), (1, .2), (2, .3), (2, .35), (3, .4)]:
        results.write(epoch, SimpleNamespace(accuracy=acc, mean_loss=1.0), None, 1.0)
    res = figures.load_results(str(tmp_path / "r_results.txt"))
    assert list(res["epoch"]) == [0, 1, 2, 3] and res["train_acc"][2] == pytest.approx(.35)
    for epoch in (0, 1):
        results.write(epoch, SimpleNamespace(accuracy=.9, mean_loss=1.0), None, 1.0)
    res = figures.load_results(str(tmp_path / "r_results.txt"))
    assert list(res["epoch"]) == [0, 1] and list(res["train_acc"]) == [.9, .9]


def test_training_curves_mean_and_std_over_common_epochs(runs, tmp_path):
    fig = figures.training_curves([runs.a1, runs.a2], tmp_path / "curves", label="a")
    assert_drawn(tmp_path / "curves", fig)
    ax_acc, ax_loss = fig.axes[:2]
    train, evaluation = ax_acc.lines[:2]
    assert list(train.get_xdata()) == [1, 2, 3]                  # epochs both runs have
    expected = 50 * (figures.load_run(runs.a1)["results"]["train_acc"][:3] +
                     figures.load_run(runs.a2)["results"]["train_acc"][:3])
    assert np.allclose(train.get_ydata(), expected)
    assert len(ax_acc.collections) == 2                           # the ± std bands
    assert "validation" in evaluation.get_label()
    fig = figures.training_curves(runs.bare, tmp_path / "bare")   # eval part never ran
    assert_drawn(tmp_path / "bare", fig)
    assert len(fig.axes[0].lines) == 1


def test_accuracy_vs_hidden_per_run_rows_and_summary_rows(tmp_path):
    rows = [{"NUM_HIDDEN": h, "LOSS_TYPE": loss, "MODEL_SEED": seed,
             "final_eval_acc": 0.5 + 0.1 * k + 0.01 * seed}
            for k, h in enumerate((64, 128, 256)) for loss in ("sum", "max") for seed in (1, 2)]
    fig = figures.accuracy_vs_hidden(rows, tmp_path / "per_run")
    assert_drawn(tmp_path / "per_run", fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.containers) == 2  # one line per LOSS_TYPE
    assert np.allclose(ax.containers[0].lines[0].get_ydata(), [51.5, 61.5, 71.5])
    means = [{"NUM_HIDDEN": h, "REG_TYPE": reg, "n_runs": 3, "final_eval_acc_mean": 0.7,
              "final_eval_acc_std": 0.02, "best_eval_acc_mean": 0.75, "best_eval_acc_std": 0.01}
             for h in (128, 512) for reg in ("none", "simple")]
    fig = figures.accuracy_vs_hidden(means, tmp_path / "means",
                                     accuracy_key=["final_eval_acc", "best_eval_acc"])
    assert_drawn(tmp_path / "means", fig)
    assert np.allclose(fig.axes[1].containers[0].lines[0].get_ydata(), [75, 75])
    assert figures.condition_keys_of(means) == ["REG_TYPE"]


def test_spike_raster(runs, tmp_path):
    fig = figures.spike_raster(runs.a1, tmp_path / "raster")
    assert_drawn(tmp_path / "raster", fig)
    assert len(fig.axes) == 4                                     # input, hidden0, hidden1, output
    fig = figures.spike_raster(runs.a1, tmp_path / "raster2", populations="hidden1",
                               samples=[1, 4])
    assert_drawn(tmp_path / "raster2", fig)
    assert fig.axes[0].get_xlim() == (0, 2 * TRIAL_MS)


def test_voltage_traces(runs, tmp_path):
    fig = figures.voltage_traces(runs.a1, tmp_path / "v", var="Vhidden0", sample=2,
                                 neurons=[0, 3])
    assert_drawn(tmp_path / "v", fig)
    assert len(fig.axes[0].lines) == 3                            # two neurons and the threshold
    array = np.load(runs.a1 + "_Voutput.npy")
    fig = figures.voltage_traces(array, tmp_path / "v_array", var="Voutput", sample=1)
    assert_drawn(tmp_path / "v_array", fig)
    with pytest.raises(IndexError):
        figures.voltage_traces(runs.a1, tmp_path / "v_bad", sample=99)


def test_confusion_matrix(runs, tmp_path):
    fig = figures.confusion_matrix(runs.a1, tmp_path / "conf")
    assert_drawn(tmp_path / "conf", fig)
    shown = fig.axes[0].images[0].get_array()
    assert np.allclose(shown.sum(axis=0), 1.0)                   # columns: fractions of a label
    counts = np.load(runs.a1 + "_confusion_train.npy")
    fig = figures.confusion_matrix(counts, tmp_path / "conf_counts", epoch=0, normalise=False)
    assert_drawn(tmp_path / "conf_counts", fig)
    assert np.array_equal(fig.axes[0].images[0].get_array(), counts[0])


def test_hidden_activity(runs, tmp_path):
    fig = figures.hidden_activity(runs.a1, tmp_path / "hidden")
    assert_drawn(tmp_path / "hidden", fig)
    per_neuron_hist = fig.axes[2]
    assert len(per_neuron_hist.patches) > 0                       # from the hidden recordings
    log = figures.load_run(runs.b)["log"]
    fig = figures.hidden_activity(log, tmp_path / "hidden_log")  # log records only
    assert_drawn(tmp_path / "hidden_log", fig)


def test_draw_all(runs, tmp_path):
    rows = [{"NUM_HIDDEN": h, "LOSS_TYPE": "sum", "final_eval_acc": a, "best_eval_acc": a + .01}
            for h, a in ((16, 0.6), (32, 0.7))]
    with open(runs.folder / "sweep" / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "figs"
    written = figures.draw_all(str(runs.folder), str(out))
    sweep = out / "sweep"
    for stem in ("a_seed1_training", "a_seed1_confusion_train", "a_seed1_confusion_eval",
                 "a_seed1_raster", "a_seed1_Vhidden0", "a_seed1_Voutput",
                 "a_seed1_hidden_activity", "b_seed1_training", "accuracy_vs_hidden"):
        assert_drawn(sweep / stem)
    assert_drawn(out / "bare_training")
    assert not (sweep / "b_seed1_raster.png").exists()
    combined = [w for w in written if os.path.basename(w).startswith("combined_")]
    assert [os.path.basename(w) for w in combined] == ["combined_a_seed_training"]
    assert_drawn(combined[0])


def test_command_line(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "runs", base_p(NAME=f"c_s{seed}", MODEL_SEED=seed), 2, seed=seed,
                  recordings=False, confusion=False)
    assert figures.main([str(tmp_path / "runs"), "--out", str(tmp_path / "cli")]) == 0
    for stem in ("c_s1_training", "c_s2_hidden_activity", "combined_c_s_training"):
        assert_drawn(tmp_path / "cli" / stem)
    figures.main([str(tmp_path / "runs")])                          # default: FOLDER/figures
    assert_drawn(tmp_path / "runs" / "figures" / "combined_c_s_training")


def test_a_broken_file_is_reported_and_the_other_figures_drawn(tmp_path):
    prefix = write_run(tmp_path / "runs", base_p(NAME="broken"), 2, recordings=False)
    with open(prefix + "_confusion_eval.npy", "wb") as f:
        f.write(b"not an array")
    with pytest.warns(RuntimeWarning, match="broken_confusion_eval"):
        written = figures.draw_all(str(tmp_path / "runs"), str(tmp_path / "out"))
    assert_drawn(tmp_path / "out" / "broken_training")
    assert str(tmp_path / "out" / "broken_confusion_train") in written
    assert str(tmp_path / "out" / "broken_confusion_eval") not in written


def test_runs_folded_by_folds_are_drawn_together(tmp_path):
    """A sweep over FOLDS (a folder per task, as eventprop.tools.sweep writes them, the fold's
    files named {NAME}_fold{k}): the folds of one parameter set make one combined figure."""
    sweep = tmp_path / "sweep"
    for k in range(3):
        write_run(sweep / "set000" / f"fold{k:02d}", base_p(NAME=f"run_fold{k}", FOLDS=[k]), 3,
                  seed=k, recordings=False, confusion=False)
    write_run(sweep / "set001" / "fold00", base_p(NAME="run_fold0", FOLDS=[0], NUM_HIDDEN=32),
              3, recordings=False, confusion=False)
    written = figures.draw_all(str(sweep), str(tmp_path / "out"))
    combined = [w for w in written if os.path.basename(w).startswith("combined_")]
    assert [os.path.basename(w) for w in combined] == ["combined_run_fold_training"]
    assert_drawn(combined[0])
    assert sorted(len(g) for g in figures.parameter_groups(figures.find_runs(sweep))) == [1, 3]


def test_a_damaged_log_line_is_skipped_and_named(tmp_path):
    prefix = write_run(tmp_path / "runs", base_p(NAME="damaged"), 3, recordings=False,
                       confusion=False)
    with open(prefix + "_log.jsonl") as f:
        lines = f.readlines()
    lines[1] = lines[1][:25] + "\n"                              # a line cut short
    with open(prefix + "_log.jsonl", "w") as f:
        f.writelines(lines)
    with pytest.warns(RuntimeWarning, match=r"damaged_log\.jsonl, line 2: not JSON"):
        written = figures.draw_all(str(tmp_path / "runs"), str(tmp_path / "out"))
    for stem in ("damaged_training", "damaged_hidden_activity"):
        assert str(tmp_path / "out" / stem) in written
        assert_drawn(tmp_path / "out" / stem)
    with pytest.warns(RuntimeWarning, match="line 2"):
        log = figures.load_run(prefix)["log"]
    assert [r["epoch"] for r in log] == [0, 2]


def test_a_damaged_results_row_is_skipped_and_named(tmp_path):
    results = storage.ResultsFile(str(tmp_path / "r_results.txt"))
    for epoch in range(3):
        results.write(epoch, SimpleNamespace(accuracy=0.5, mean_loss=1.0), None, 1.0)
    with open(tmp_path / "r_results.txt", "a") as f:
        f.write("3 0.5 nan-ish\n")
    with pytest.warns(RuntimeWarning, match=r"r_results\.txt, line 5: not a row of numbers"):
        res = figures.load_results(str(tmp_path / "r_results.txt"))
    assert list(res["epoch"]) == [0, 1, 2]
