"""The MNIST simulator on small files in the official IDX format: parameter checks, data errors,
splits, SHUFFLE, REDUCED_CLASSES, training with each of the original's five losses, the methods'
returns and files, LOAD_LAST, cross-validation, the script."""
import json
import os
import subprocess
import sys

import mnist
import numpy as np
import pytest

from eventprop import storage
from eventprop.training.experiment import training_order
from eventprop.simulators.mnist import PRESETS, mnist_model
from eventprop.simulators.mnist import p as default_p
from eventprop.simulators.mnist import validate
from test_mnist_data import synthetic_digits, write_mnist

N_TRAIN_FILE, N_TEST_FILE = 300, 100


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=N_TRAIN_FILE, n_test=N_TEST_FILE, gz=True)
    return str(root)


def small(data_dir, out, **kw):
    p = dict(default_p)
    p.update(DATA_DIR=data_dir, OUT_DIR=str(out), NAME="mnist", NUM_HIDDEN=32, N_BATCH=16,
             N_TRAIN=240, N_VALIDATE=60, N_TEST=100, N_EPOCH=2, MODEL_SEED=1, PROGRESS=False)
    p.update(kw)
    return p


def samples(data):
    """Each image as bytes (to find images again in another set)."""
    return [img.tobytes() for img in data.images]


# --- parameters and data errors ---------------------------------------------------------------

def test_unknown_key_is_an_error_with_suggestion(data_dir, tmp_path):
    with pytest.raises(KeyError, match="NUM_HIDEN.*NUM_HIDDEN"):
        mnist_model(small(data_dir, tmp_path, NUM_HIDEN=10))


@pytest.mark.parametrize("key,value", [
    ("LOSS_TYPE", "avg_xentropi"), ("N_BATCH", 0), ("TRIAL_MS", 4.0), ("REDUCED_CLASSES", [3, 12]),
    ("REDUCED_CLASSES", [1, 1]), ("PDROP_INPUT", 1.0), ("N_FOLDS", 1), ("DTYPE", "float16"),
    ("REG_TYPE", "simpel"), ("N_TEST", 0)])
def test_invalid_values_name_the_key(data_dir, tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        mnist_model(small(data_dir, tmp_path, **{key: value}))


def test_missing_data_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST.train-images-idx3-ubyte.*yann\.lecun"):
        mnist_model(small(str(tmp_path), tmp_path))


def test_download_through_the_simulator(data_dir, tmp_path, monkeypatch):
    calls = []

    def download_file(fname, target_dir=None, force=False):
        calls.append(fname)
        with open(os.path.join(data_dir, "MNIST", fname), "rb") as f:
            content = f.read()
        with open(os.path.join(target_dir, fname), "wb") as f:
            f.write(content)
        return os.path.join(target_dir, fname)

    monkeypatch.setattr(mnist, "download_file", download_file)
    model = mnist_model(small(str(tmp_path / "fresh"), tmp_path, DOWNLOAD=True))
    assert len(calls) == 4 and len(model.train_data) == N_TRAIN_FILE
    assert sorted(os.listdir(tmp_path / "fresh" / "MNIST")) == sorted(
        os.listdir(os.path.join(data_dir, "MNIST")))


# --- splits -----------------------------------------------------------------------------------

def test_split_is_disjoint_sized_and_seeded(data_dir, tmp_path):
    p = small(data_dir, tmp_path)
    model = mnist_model(p)
    train, evaluation = model.split(p)
    assert len(train) == 240 and len(evaluation) == 60
    assert not set(samples(train)) & set(samples(evaluation))
    order = np.random.default_rng(123).permutation(N_TRAIN_FILE)      # TRAIN_DATA_SEED 123
    images, labels = synthetic_digits(N_TRAIN_FILE, 0)
    assert np.array_equal(train.images, images[order[:240]])         # first N_TRAIN
    assert np.array_equal(evaluation.images, images[order[-60:]])    # last N_VALIDATE
    assert np.array_equal(evaluation.labels, labels[order[-60:]])
    again = model.split(p)[0]
    other = model.split(dict(p, TRAIN_DATA_SEED=7))[0]
    assert samples(again) == samples(train) and samples(other) != samples(train)
    small_train, none = model.split(dict(p, N_TRAIN=100, N_VALIDATE=0))
    assert len(small_train) == 100 and none is None
    with pytest.raises(ValueError, match=r"N_TRAIN.*N_VALIDATE.*= 301.*300 training images"):
        model.split(dict(p, N_VALIDATE=61))


def test_test_set_is_shuffled_with_its_own_seed(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_TEST=30)
    model = mnist_model(p)
    test = model.test_set(p)
    order = np.random.default_rng(456).permutation(N_TEST_FILE)
    assert np.array_equal(test.images, synthetic_digits(N_TEST_FILE, 1)[0][order[:30]])
    assert samples(model.test_set(dict(p, TEST_DATA_SEED=1))) != samples(test)
    assert samples(model.test_set(dict(p, TRAIN_DATA_SEED=1))) == samples(test)
    with pytest.raises(ValueError, match="N_TEST"):
        model.test(dict(p, N_TEST=101))


@pytest.mark.parametrize("shuffle", [False, True])
def test_shuffle_sets_the_order_of_the_training_images(data_dir, tmp_path, shuffle):
    p = small(data_dir, tmp_path, SHUFFLE=shuffle, REC_PREDICTIONS=True, ETA=0.0)
    model = mnist_model(p)
    model.train(p)
    train_labels = model.split(p)[0].labels
    shown = np.load(tmp_path / "mnist_labels_train.npy")
    for epoch in range(2):
        assert np.array_equal(shown[epoch], train_labels[training_order(p, 240, epoch)])
    assert np.array_equal(shown[0], shown[1]) != shuffle
    evaluation = np.load(tmp_path / "mnist_labels_eval.npy")
    assert np.array_equal(evaluation[0], evaluation[1])                 # fixed order


def test_reduced_classes_relabels_and_sizes_the_output(data_dir, tmp_path):
    p = small(data_dir, tmp_path, REDUCED_CLASSES=[7, 2, 4], N_TRAIN=70, N_VALIDATE=20,
              N_TEST=30, N_EPOCH=3)
    model = mnist_model(p)
    assert model.n_classes == 3 and set(model.train_data.labels) == {0, 1, 2}
    _, labels = synthetic_digits(N_TRAIN_FILE, 0)
    kept = np.isin(labels, [7, 2, 4])
    assert len(model.train_data) == kept.sum()
    assert np.array_equal(model.train_data.labels, np.select(
        [labels[kept] == 7, labels[kept] == 2], [0, 1], 2))
    *_, train_acc, eval_acc = model.train(p)
    assert np.load(tmp_path / "mnist_w_hidden_output_last.npy").shape == (32, 3)
    assert eval_acc > 0.8
    *_, test_acc = model.test(dict(p, LOAD_LAST=True))
    assert test_acc > 0.8
    with pytest.raises(ValueError, match="REDUCED_CLASSES"):
        model.train(dict(p, N_TRAIN=200))                    # only 91 images of these classes


# --- training ---------------------------------------------------------------------------------

# first_spike_exp with the first-spike settings of the original's MNIST comparison
LOSS_SETTINGS = {"avg_xentropy": {}, "sum": {"ETA": 2e-2}, "max": {}, "first_spike": {},
                 "first_spike_exp": {"TAU_0": 1.0, "TAU_1": 3.0, "ALPHA": 3.6e-4}}


@pytest.mark.parametrize("loss", list(LOSS_SETTINGS))
def test_each_original_loss_learns_the_toy_digits(data_dir, tmp_path, loss):
    p = small(data_dir, tmp_path, LOSS_TYPE=loss, N_EPOCH=4, NAME=loss, **LOSS_SETTINGS[loss])
    model = mnist_model(p)
    before = model.test(p)[-1]
    *_, train_acc, test_acc = model.train_test(p)
    assert before < 0.3 and test_acc >= 0.85 and train_acc >= 0.7, (before, train_acc, test_acc)


def test_other_losses_of_the_engine_run(data_dir, tmp_path):
    p = small(data_dir, tmp_path, LOSS_TYPE="sum_weigh_exp", N_EPOCH=4, ETA=2e-2)
    *_, train_acc, eval_acc = mnist_model(p).train(p)
    assert eval_acc > 0.8


def test_methods_return_and_write_their_files(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=2, RECURRENT=True, REG_TYPE="simple",
              DEBUG_HIDDEN_N=True, COLLECT_CONFUSION=True, W_OUTPUT_EPOCH_TRIAL=[[1, 3]],
              CHECKPOINT_BEST="validation")
    model = mnist_model(p)
    out = model.train(p)
    assert len(out) == 6 and isinstance(out[0], dict) and 0 < out[-1] <= 1
    results = np.loadtxt(tmp_path / "mnist_results.txt")
    assert results.shape == (2, 6 + 9)
    assert results[-1, 3] == pytest.approx(out[-1], abs=1e-6)
    for f in ("mnist.json", "mnist_log.jsonl", "mnist_checkpoint_last.npz",
              "mnist_checkpoint_best.npz", "mnist_best.txt", "mnist_w_input_hidden_last.npy",
              "mnist_w_hidden_output_last.npy", "mnist_w_hidden0_hidden0_last.npy",
              "mnist_w_input_hidden_e1_t3.npy"):
        assert (tmp_path / f).exists(), f
    assert np.load(tmp_path / "mnist_w_input_hidden_last.npy").shape == (784, 32)
    assert np.load(tmp_path / "mnist_confusion_eval.npy")[-1].sum() == 60
    log = storage.load_epoch_log(str(tmp_path / "mnist_log.jsonl"))
    assert [r["eta"] for r in log] == [1e-2, 1e-2]                  # constant ETA

    q = small(data_dir, tmp_path, NAME="tt", N_EPOCH=1, N_TRAIN=200)
    *_, train_acc, test_acc = model.train_test(q)
    log = storage.load_epoch_log(str(tmp_path / "tt_log.jsonl"))
    assert log[-1]["test_acc"] == test_acc and log[-1]["train_acc"] == train_acc
    # test() with LOAD_LAST uses the trained weights and the real labels
    spike_t, spike_ID, _, _, zero, again = model.test(
        dict(q, NAME="tested", CHECKPOINT_NAME="tt", LOAD_LAST=True, REC_SPIKES=["input"],
             REC_SPIKES_EPOCH_TRIAL=[[0, 0]]))
    assert zero == 0.0 and again == test_acc
    log = storage.load_epoch_log(str(tmp_path / "tested_log.jsonl"))
    assert log[-1]["test_loss"] == pytest.approx(storage.load_epoch_log(
        str(tmp_path / "tt_log.jsonl"))[-1]["test_loss"])
    assert np.array_equal(np.load(tmp_path / "tested_rec_labels.npy"),
                          model.test_set(q).labels[:16])
    assert spike_ID["input"].max() < 784 and len(spike_t["input"]) > 0
    fresh = model.test(dict(q, NAME="fresh"))[-1]
    assert fresh < again


def test_cross_validate_folds_start_alike_and_write_their_files(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_FOLDS=3, N_EPOCH=1, ETA=0.0, REC_PREDICTIONS=True,
              N_TRAIN=200, N_VALIDATE=40)
    accuracies, seconds = mnist_model(p).cross_validate(p)
    assert len(accuracies) == 3 and len(seconds) == 3 and all(len(a) == 2 for a in accuracies)
    weights = [np.load(tmp_path / f"mnist_fold{k}_w_input_hidden_last.npy") for k in range(3)]
    assert all(np.array_equal(w, weights[0]) for w in weights)     # ETA 0: the initial weights
    evaluated = [np.load(tmp_path / f"mnist_fold{k}_labels_eval.npy")[0] for k in range(3)]
    assert [len(e) for e in evaluated] == [80, 80, 80]
    for k in range(3):
        assert (tmp_path / f"mnist_fold{k}_results.txt").exists()
        assert len(np.load(tmp_path / f"mnist_fold{k}_labels_train.npy")[0]) == 160


def test_cross_validate_runs_only_the_selected_folds(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_FOLDS=3, N_EPOCH=1, N_TRAIN=200, N_VALIDATE=40, FOLDS=[2])
    accuracies, _ = mnist_model(p).cross_validate(p)
    assert len(accuracies) == 1
    assert (tmp_path / "mnist_fold2_results.txt").exists()
    assert not (tmp_path / "mnist_fold0_results.txt").exists()


def test_parameters_and_presets_are_valid():
    json.dumps(default_p)
    full = validate(dict(PRESETS["paper"]))
    assert full["NUM_HIDDEN"] == 128 and full["N_MAX_SPIKE"] == 500 and full["N_EPOCH"] == 50


def test_train_MNIST_script_with_preset_and_overrides(data_dir, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "train_MNIST.py"), "--data", data_dir, "--out",
           str(tmp_path), "--preset", "paper", "N_TRAIN=64", "N_TEST=32", "N_EPOCH=1",
           "NUM_HIDDEN=8", "PROGRESS=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    with open(tmp_path / "paper.json") as f:
        saved = json.load(f)
    assert saved["N_MAX_SPIKE"] == 500 and saved["NUM_HIDDEN"] == 8 and saved["N_VALIDATE"] == 0
    bad = subprocess.run(cmd + ["NUM_HIDEN=3"], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert bad.returncode != 0 and "NUM_HIDEN" in bad.stderr
