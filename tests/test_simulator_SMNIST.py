"""The sequential-MNIST simulator on small files in the official IDX format: parameter checks, the
input size of both modes, training in both modes, the methods' returns and files, the learning-rate
schedule, delay line and class balancing, cross-validation, the script."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from eventprop import storage
from eventprop.data.mnist import SMNISTEncoder
from eventprop.simulators.smnist import SMNIST_model
from eventprop.simulators.smnist import p as default_p
from test_mnist_data import synthetic_digits, write_mnist

N_TRAIN_FILE, N_TEST_FILE = 300, 100
# pixel mode: 784 slots of 1 ms; row mode: 28 slots
PIXEL = {"SMNIST_MODE": "pixel", "TRIAL_MS": 800.0}
ROW = {"SMNIST_MODE": "row", "TRIAL_MS": 40.0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=N_TRAIN_FILE, n_test=N_TEST_FILE)
    return str(root)


def small(data_dir, out, mode=ROW, **kw):
    p = dict(default_p)
    p.update(DATA_DIR=data_dir, OUT_DIR=str(out), NAME="smnist", NUM_HIDDEN=32, N_BATCH=16,
             N_TRAIN=240, N_VALIDATE=60, N_TEST=100, N_EPOCH=3, MODEL_SEED=1, PROGRESS=False,
             ETA=1e-2, LR_EASE_IN_FACTOR=2.0, **mode)
    p.update(kw)
    return p


# --- parameters -------------------------------------------------------------------------------

def test_unknown_key_is_an_error_with_suggestion(data_dir, tmp_path):
    with pytest.raises(KeyError, match="SMNIST_MOD.*SMNIST_MODE"):
        SMNIST_model(small(data_dir, tmp_path, SMNIST_MOD="row"))


@pytest.mark.parametrize("key,value", [
    ("SMNIST_MODE", "column"), ("PIXEL_MS", 0.5), ("PIXEL_MS", 2.0), ("TRIAL_MS", 27.0),
    ("AUGMENTATION", {"random_shift": 4}), ("RESCALE_T", 0.5), ("EVALUATION", "speaker"),
    ("B_INIT", 0.5), ("LOSS_TYPE", "sum_weigh"), ("REDUCED_CLASSES", [10])])
def test_invalid_values_name_the_key(data_dir, tmp_path, key, value):
    """PIXEL_MS 0.5 < DT_MS; PIXEL_MS 2 makes 28 slots longer than the 40 ms trial."""
    with pytest.raises(ValueError, match=key if key != "PIXEL_MS" or value < 1 else "TRIAL_MS"):
        SMNIST_model(small(data_dir, tmp_path, **{key: value}))


def test_pixel_mode_needs_a_trial_of_784_slots(data_dir, tmp_path):
    with pytest.raises(ValueError, match="TRIAL_MS.*784"):
        SMNIST_model(small(data_dir, tmp_path, PIXEL, TRIAL_MS=783.0))
    assert default_p["TRIAL_MS"] >= 784 * default_p["PIXEL_MS"]


def test_missing_data_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*yann\.lecun"):
        SMNIST_model(small(str(tmp_path), tmp_path))


# --- input of both modes ----------------------------------------------------------------------

def test_input_size_and_spikes_of_both_modes(data_dir, tmp_path):
    images, labels = synthetic_digits(N_TRAIN_FILE, 0)
    model = SMNIST_model(small(data_dir, tmp_path, PIXEL))
    for mode, n_input in ((PIXEL, 99), (ROW, 28 * 99)):
        p = small(data_dir, tmp_path, mode, PIXEL_MS=1.0)
        model.train(dict(p, N_EPOCH=1, N_TRAIN=32, N_VALIDATE=16))       # reloads per mode
        assert model.train_data.n_channels == n_input
        assert np.load(tmp_path / "smnist_w_input_hidden_last.npy").shape == (n_input, 32)
        got = model.train_data.spikes([3, 4])
        ref = SMNISTEncoder(mode["SMNIST_MODE"], 1.0, 1.0, mode["TRIAL_MS"])(images[3:5],
                                                                              labels[3:5])
        assert np.array_equal(got.steps, ref.steps) and np.array_equal(got.channels,
                                                                       ref.channels)


def test_slot_length_sets_the_spike_steps(data_dir, tmp_path):
    p = small(data_dir, tmp_path, ROW, PIXEL_MS=2.5, DT_MS=0.5, TRIAL_MS=75.0)
    model = SMNIST_model(p)
    steps = model.train_data.spikes().steps
    assert model.train_data.n_steps == 150 and set(np.unique(steps)) <= set(range(0, 140, 5))


# --- training and methods ---------------------------------------------------------------------

@pytest.mark.parametrize("mode,settings", [
    (ROW, {}),
    (PIXEL, {"N_EPOCH": 6, "ETA": 2e-2, "INPUT_HIDDEN_MEAN": 0.1, "INPUT_HIDDEN_STD": 0.05})])
def test_training_improves_accuracy(data_dir, tmp_path, mode, settings):
    p = small(data_dir, tmp_path, mode, **settings)
    model = SMNIST_model(p)
    before = model.test(p)[-1]
    *_, train_acc, test_acc = model.train_test(p)
    assert before < 0.3 and test_acc >= 0.85 and train_acc >= 0.7, (before, train_acc, test_acc)
    # test() with LOAD_LAST evaluates the trained weights
    assert model.test(dict(p, LOAD_LAST=True))[-1] == test_acc


def test_methods_return_and_write_their_files(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=2, ETA=1e-3, LR_EASE_IN_FACTOR=1.05,
              CHECKPOINT_BEST="training", REC_NEURONS=[("output", "V")],
              REC_NEURONS_EPOCH_TRIAL=[[1, 15]])
    model = SMNIST_model(p)
    spike_t, spike_ID, vars_n, vars_s, train_acc, eval_acc = model.train(p)
    assert vars_n["Voutput"].shape == (16, 40, 10)          # trial 15: the first evaluation one
    assert np.array_equal(np.load(tmp_path / "smnist_rec_labels.npy"),
                          model.split(p)[1].labels[:16])
    log = storage.load_epoch_log(str(tmp_path / "smnist_log.jsonl"))
    n_trials = 240 // 16 + -(-60 // 16)                     # training + evaluation trials
    assert log[0]["eta"] == pytest.approx(1e-6 * 1.05 ** n_trials)        # SHD ease-in
    assert log[0]["silent_per_layer_rewired"] is not None                 # REWIRE_SILENT
    for f in ("smnist_results.txt", "smnist_checkpoint_last.npz", "smnist_checkpoint_best.npz",
              "smnist_best.txt", "smnist_Voutput.npy"):
        assert (tmp_path / f).exists(), f


def test_delay_line_balancing_and_reduced_classes(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=1, N_INPUT_DELAY=1, INPUT_DELAY=5.0,
              BALANCE_TRAIN_CLASSES=True, REC_PREDICTIONS=True, REDUCED_CLASSES=[3, 8],
              N_TRAIN=50, N_VALIDATE=10, N_HID_LAYER=2, HIDDEN_NEURON_TYPE="ALIF")
    model = SMNIST_model(p)
    assert model.n_classes == 2
    model.train(p)
    assert np.load(tmp_path / "smnist_w_input_hidden_last.npy").shape == (2 * 28 * 99, 32)
    assert np.load(tmp_path / "smnist_w_hidden_output_last.npy").shape == (32, 2)
    shown = np.load(tmp_path / "smnist_labels_train.npy")[0]
    assert np.bincount(shown)[0] == np.bincount(shown)[1]              # balanced


def test_cross_validate_writes_fold_files(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_FOLDS=2, N_EPOCH=1, N_TRAIN=60, N_VALIDATE=20)
    accuracies, seconds = SMNIST_model(p).cross_validate(p)
    assert len(accuracies) == 2 and len(seconds) == 2
    for k in range(2):
        with open(tmp_path / f"smnist_fold{k}.json") as f:
            assert json.load(f)["SMNIST_MODE"] == "row"
        assert np.loadtxt(tmp_path / f"smnist_fold{k}_results.txt").shape == (6,)


def test_train_SMNIST_script(data_dir, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "train_SMNIST.py"), "--data", data_dir, "--out",
           str(tmp_path), "SMNIST_MODE=row", "TRIAL_MS=40", "N_TRAIN=32", "N_VALIDATE=0",
           "N_TEST=16", "N_EPOCH=1", "NUM_HIDDEN=8", "PROGRESS=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    with open(tmp_path / "smnist.json") as f:
        assert json.load(f)["SMNIST_MODE"] == "row"
