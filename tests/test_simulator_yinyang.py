"""The Yin-Yang simulator: parameter validation, training improves accuracy, files, resume,
recordings, overflow warnings, cross-validation."""
import json
import os

import numpy as np
import pytest

from eventprop import storage
from eventprop.training.experiment import training_order
from eventprop.simulators.yinyang import p as default_p
from eventprop.simulators.yinyang import yinyang, yinyang_spike_data
from eventprop.data.spikes import times_to_steps
from eventprop.data.yinyang import generate_yinyang

SMALL = {"N_TRAIN": 400, "N_TEST": 100, "N_EPOCH": 2, "NUM_HIDDEN": 40, "MODEL_SEED": 3,
         "PROGRESS": False, "ETA": 5e-3}


def small(tmp_path, **kw):
    p = dict(default_p)
    p.update(SMALL, OUT_DIR=str(tmp_path), NAME="yy")
    p.update(kw)
    return p


def test_unknown_key_is_an_error_with_suggestion(tmp_path):
    with pytest.raises(KeyError, match="NUM_HIDEN.*NUM_HIDDEN"):
        yinyang(small(tmp_path, NUM_HIDEN=10))


@pytest.mark.parametrize("key,value", [("LOSS_TYPE", "first_spikes"), ("N_BATCH", 0),
                                       ("TAU_MEM", -20.0), ("PDROP", 1.5), ("DT_MS", 0),
                                       ("DTYPE", "float16"), ("N_EPOCH", 1.5),
                                       ("TRIAL_MS", 0.2)])
def test_invalid_values_name_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        yinyang(small(tmp_path, **{key: value}))


def test_encoded_samples_reach_the_engine_at_their_spike_times():
    """Every sample's five spikes (bias, x, y, 1-x, 1-y) arrive in the engine layout at the steps
    of t = 2 dt + f (T - 4 dt), each channel once."""
    dt, T = 0.1, 30.0
    data = yinyang_spike_data(50, 7, dt, T)
    features, labels = generate_yinyang(50, 7)
    assert np.array_equal(data.labels, labels)
    in_ptr, in_ch = data.batch(np.arange(50))
    for b in range(50):
        times = np.concatenate([[0.0], features[b]]) * (T - 4 * dt) + 2 * dt
        expected = sorted(zip(times_to_steps(times, dt), range(5)))
        got = [(n, int(c)) for n in range(data.n_steps)
               for c in in_ch[in_ptr[b, n]:in_ptr[b, n + 1]]]
        assert got == expected


def test_training_improves_accuracy_and_writes_results(tmp_path):
    p = small(tmp_path, N_EPOCH=3, N_TRAIN=1000)
    model = yinyang(p)
    before = model.test(small(tmp_path, N_TRAIN=1000))[-1]
    *_, train_acc, test_acc = model.train_test(p)
    assert test_acc > before + 0.15 and test_acc > 0.6
    results = np.loadtxt(tmp_path / "yy_results.txt")
    assert results.shape == (3 + 1, 6)   # test() wrote one line first, then 3 epochs
    assert results[-1, 3] == pytest.approx(test_acc, abs=1e-6)
    log = storage.load_epoch_log(str(tmp_path / "yy_log.jsonl"))
    assert [r["epoch"] for r in log[1:]] == [0, 1, 2]
    assert {"train_acc", "test_acc", "train_loss", "eta", "seconds",
            "train_hidden_spikes_per_sample"} <= set(log[-1])
    for f in ("yy_w_input_hidden_last.npy", "yy_w_hidden_output_last.npy",
              "yy_checkpoint_last.npz", "yy_w_input_hidden_e0_t0.npy"):
        assert (tmp_path / f).exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]
    # test() with LOAD_LAST evaluates the trained weights
    again = model.test(small(tmp_path, N_TRAIN=1000, LOAD_LAST=True))[-1]
    assert again == pytest.approx(test_acc)


def test_best_training_checkpoint_is_tested_under_another_name(tmp_path):
    """CHECKPOINT_BEST "training" keeps the epoch with the best training accuracy; test() with
    LOAD_BEST and CHECKPOINT_NAME evaluates those weights and writes its own files."""
    p = small(tmp_path, N_EPOCH=3, CHECKPOINT_BEST="training")
    model = yinyang(p)
    model.train_test(p)
    log = storage.load_epoch_log(str(tmp_path / "yy_log.jsonl"))
    best = max(range(3), key=lambda e: (log[e]["train_acc"], -e))   # the first of equal ones
    assert (tmp_path / "yy_checkpoint_best.npz").exists()
    assert (tmp_path / "yy_best.txt").read_text().split()[0] == str(best)
    accuracy = model.test(small(tmp_path, NAME="yy_best_test", CHECKPOINT_NAME="yy",
                                LOAD_BEST=True))[-1]
    assert accuracy == pytest.approx(log[best]["test_acc"])
    assert len(np.loadtxt(tmp_path / "yy_results.txt")) == 3     # untouched by test()
    assert (tmp_path / "yy_best_test_results.txt").exists()


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_continues_like_an_uninterrupted_run(tmp_path, shuffle):
    a, b = tmp_path / "a", tmp_path / "b"
    model = yinyang(small(a))
    model.train(small(a, N_EPOCH=2, SHUFFLE=shuffle))
    model.train(small(b, N_EPOCH=1, SHUFFLE=shuffle))
    model.train(small(b, N_EPOCH=2, LOAD_LAST=True, SHUFFLE=shuffle))
    for f in ("yy_w_input_hidden_last.npy", "yy_w_hidden_output_last.npy"):
        assert np.array_equal(np.load(a / f), np.load(b / f))
    assert len(np.loadtxt(b / "yy_results.txt")) == 2


def test_shuffle_changes_the_order_every_epoch_and_keeps_the_samples():
    p = small(".", SHUFFLE=True)
    orders = [training_order(p, 300, e) for e in range(3)]
    assert all(sorted(o) == list(range(300)) for o in orders)
    assert not np.array_equal(orders[0], orders[1])
    assert np.array_equal(orders[2], training_order(p, 300, 2))
    assert np.array_equal(training_order(small("."), 300, 1), np.arange(300))


def test_load_last_without_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="yy_checkpoint_last.npz"):
        yinyang(small(tmp_path)).test(small(tmp_path, LOAD_LAST=True))


def test_recordings(tmp_path):
    p = small(tmp_path, N_EPOCH=1, REC_SPIKES=["input", "hidden", "output"],
              REC_NEURONS=[("output", "V")], REC_SYNAPSES=[("hid_to_out", "w")],
              REC_EPOCH_TRIAL=[[0, 0], [0, 2]])
    spike_t, spike_ID, vars_n, vars_s, acc = yinyang(p).train(p)
    B, T = p["N_BATCH"], p["TRIAL_MS"]
    assert len(spike_t["input"]) == 2 * B * 5            # two recorded trials, 5 spikes each
    assert spike_t["input"].max() < 2 * B * T
    assert len(spike_t["hidden"]) == len(spike_ID["hidden"]) > 0
    assert spike_ID["hidden"].max() < p["NUM_HIDDEN"]
    assert vars_n["Voutput"].shape == (2 * B, int(round(T / p["DT_MS"])), 3)
    assert vars_s["whid_to_out"].shape == (2, p["NUM_HIDDEN"], 3)
    assert (tmp_path / "yy_hidden_spike_t.npy").exists()


def test_spike_overflow_is_reported(tmp_path):
    p = small(tmp_path, N_EPOCH=1, N_MAX_SPIKE=1)
    with pytest.warns(RuntimeWarning, match="N_MAX_SPIKE"):
        yinyang(p).train(p)
    log = storage.load_epoch_log(str(tmp_path / "yy_log.jsonl"))
    assert log[-1]["n_unstored_spikes"] > 0


def test_cross_validate(tmp_path):
    p = small(tmp_path, N_EPOCH=1, N_FOLDS=3)
    accuracies, seconds = yinyang(p).cross_validate(p)
    assert len(accuracies) == 3 and len(seconds) == 3
    assert all(0.0 <= a <= 1.0 for fold in accuracies for a in fold)
    assert (tmp_path / "yy_fold2_results.txt").exists()


def test_float64_runs(tmp_path):
    p = small(tmp_path, N_EPOCH=1, DTYPE="float64")
    *_, acc = yinyang(p).train(p)
    w = np.load(tmp_path / "yy_w_input_hidden_last.npy")
    assert w.dtype == np.float64 and 0.0 <= acc <= 1.0


def test_parameters_are_json_serialisable():
    json.dumps(default_p)


def test_rewire_silent_lifts_the_inputs_of_silent_neurons(tmp_path):
    """All hidden neurons silent (tiny input weights), no learning: after each epoch every input
    weight is lifted by REWIRE_LIFT; with REWIRE_LIFT = 0 they are redrawn from the init."""
    p = small(tmp_path, N_EPOCH=2, ETA=0.0, INPUT_HIDDEN_MEAN=0.0, INPUT_HIDDEN_STD=0.01,
              REWIRE_SILENT=True, REWIRE_LIFT=0.25)
    yinyang(p).train(p)
    w0 = np.load(tmp_path / "yy_w_input_hidden_e0_t0.npy")
    w = np.load(tmp_path / "yy_w_input_hidden_last.npy")
    assert np.allclose(w - w0, 0.5, atol=1e-6)
    p = small(tmp_path, N_EPOCH=1, ETA=0.0, INPUT_HIDDEN_MEAN=0.0, INPUT_HIDDEN_STD=0.01,
              REWIRE_SILENT=True, REWIRE_LIFT=0.0)
    yinyang(p).train(p)
    w = np.load(tmp_path / "yy_w_input_hidden_last.npy")
    assert np.abs(w).max() < 0.1 and not np.allclose(w, w0)


def test_a_typo_in_the_module_dictionary_itself_is_caught(monkeypatch):
    from eventprop.simulators import yinyang as simulator_yinyang
    monkeypatch.setitem(simulator_yinyang.p, "N_EPOCHS", 3)
    with pytest.raises(KeyError, match="N_EPOCHS.*N_EPOCH"):
        yinyang(simulator_yinyang.p)


def test_cross_validate_runs_only_the_selected_folds(tmp_path):
    p = small(tmp_path, N_EPOCH=1, N_FOLDS=3, FOLDS=[1])
    accuracies, seconds = yinyang(p).cross_validate(p)
    assert len(accuracies) == 1
    assert (tmp_path / "yy_fold1_results.txt").exists()
    assert not (tmp_path / "yy_fold0_results.txt").exists()
    with pytest.raises(ValueError, match="FOLDS"):
        yinyang(p).cross_validate(dict(p, FOLDS=[3]))


def test_k_folds_partition_the_samples():
    from eventprop.training.experiment import k_folds
    folds = list(k_folds(10, 3, 0))
    assert [f for f, _, _ in folds] == [0, 1, 2]
    validation = np.concatenate([v for _, _, v in folds])
    assert sorted(validation) == list(range(10))
    for _, train, val in folds:
        assert sorted(np.concatenate([train, val])) == list(range(10))


def test_train_yinyang_script(tmp_path, monkeypatch, capsys):
    """train_yinyang.py runs end to end (at toy sizes): trains with checkpoint "best" on the
    training accuracy and tests those weights under a name of their own."""
    import runpy
    import sys

    from eventprop.simulators import yinyang as simulator_yinyang

    def shrink(p):
        return dict(p, N_TRAIN=60, N_TEST=20, N_EPOCH=2, DT_MS=0.5, N_BATCH=30, PROGRESS=False)

    class Tiny(simulator_yinyang.yinyang):
        def __init__(self, p):
            super().__init__(shrink(p))

        def train_test(self, p):
            return super().train_test(shrink(p))

        def test(self, p):
            return super().test(shrink(p))

    monkeypatch.setattr(simulator_yinyang, "yinyang", Tiny)
    monkeypatch.setattr(simulator_yinyang, "p", dict(simulator_yinyang.p))
    monkeypatch.setattr(sys, "argv", ["train_yinyang.py", str(tmp_path), "2"])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runpy.run_path(os.path.join(root, "train_yinyang.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "best training accuracy): test accuracy" in out
    assert json.load(open(tmp_path / "yinyang.json"))["MODEL_SEED"] == 2
    for f in ("yinyang_checkpoint_best.npz", "yinyang_best.txt", "yinyang_results.txt",
              "yinyang_best_test_results.txt"):
        assert (tmp_path / f).exists()
