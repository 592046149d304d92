"""The DVS gesture simulator on a small folder in tonic's layout: parameter checks, data errors,
loading, splits and folds, training, the methods' returns and files, augmentations, the script."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from eventprop.data import dvs as dvs_data
from eventprop import storage
from eventprop.simulators.dvs_gesture import DVS_gesture_model, validate
from eventprop.simulators.dvs_gesture import p as default_p
from test_dvs_data import write_gesture_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_gesture_dataset(tmp_path_factory.mktemp("dvs"))


def small(data_dir, out, **kw):
    p = dict(default_p)
    p.update(DATA_DIR=data_dir, OUT_DIR=str(out), NAME="dvs", TRIAL_MS=50.0, NUM_HIDDEN=32,
             N_BATCH=16, N_TRAIN=96, N_VALIDATE=14, N_EPOCH=2, MODEL_SEED=1, PROGRESS=False,
             INPUT_HIDDEN_MEAN=0.1, INPUT_HIDDEN_STD=0.05, ETA=5e-3, LR_EASE_IN_FACTOR=2.0,
             PDROP_INPUT=0.0)
    p.update(kw)
    return p


@pytest.fixture(scope="module")
def model(data_dir, tmp_path_factory):
    return DVS_gesture_model(small(data_dir, tmp_path_factory.mktemp("out")))


def samples(data):
    """Each sample's spikes as a hashable key (to find samples again in another set)."""
    return [tuple(np.concatenate(data.sample(i)).tolist()) for i in range(len(data))]


# --- parameters and data errors ---------------------------------------------------------------

def test_unknown_key_is_an_error_with_suggestion(data_dir, tmp_path):
    with pytest.raises(KeyError, match="NUM_HIDEN.*NUM_HIDDEN"):
        DVS_gesture_model(small(data_dir, tmp_path, NUM_HIDEN=10))
    with pytest.raises(KeyError, match="SPEAKER_LEFT"):         # SHD's split keys do not apply
        validate(small(data_dir, tmp_path, SPEAKER_LEFT=[0]))


@pytest.mark.parametrize("key,value", [
    ("REDUCED_CLASSES", [3, 11]), ("REDUCED_CLASSES", [1, 1]), ("FOLD_BY", "speaker"),
    ("FOLDS", [5]), ("N_FOLDS", 1), ("CROP_START_MS", -1.0), ("LOSS_TYPE", "sum_weight_exp"),
    ("AUGMENTATION", {"spatial_shfit": 2}), ("AUGMENTATION", {"random_dilate": [1.2, 0.8]}),
    ("TRIAL_MS", 1.0), ("N_VALIDATE", -1)])
def test_invalid_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        validate({key: value})


@pytest.mark.parametrize("aug", ["random_shift", "ID_jitter", "blend"])
def test_channel_augmentations_are_refused(aug):
    value = [0.5, 0.5] if aug == "blend" else 4
    with pytest.raises(ValueError, match=f"AUGMENTATION.*{aug}.*mix pixels.*spatial_shift"):
        validate({"AUGMENTATION": {aug: value}})


def test_missing_data_names_the_folder_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"nowhere.DVSGesture.ibmGestureTrain.*research\.ibm\.com"):
        DVS_gesture_model(small(str(tmp_path / "nowhere"), tmp_path))


def test_malformed_recording_is_named(tmp_path):
    root = write_gesture_dataset(tmp_path / "data", n=5)
    bad = os.path.join(dvs_data.split_folder(root, "test"), "user25_lab", "7.npy")
    np.save(bad, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"user25_lab.7\.npy"):
        DVS_gesture_model(small(root, tmp_path))


# --- data, splits, folds ------------------------------------------------------------------------

def test_loading_and_cache(model, data_dir):
    data = model.train_data
    assert len(data) == 110 and len(model.test_data) == 110
    assert data.n_channels == 2048 and data.n_steps == 50 and model.n_classes == 11
    assert set(model.train_users) == {1, 2, 3, 4, 5} and set(model.test_users) == set(range(24, 29))
    assert model.train_files[0] == os.path.join("user01_fluorescent", "0.npy")
    assert len(os.listdir(os.path.join(data_dir, "DVSGesture", "cache"))) >= 2
    for i in range(len(data)):
        steps, channels = data.sample(i)
        assert len(set(zip(steps.tolist(), channels.tolist()))) == len(steps)


def test_data_keys_reload_the_data(model, data_dir, tmp_path):
    coarse = DVS_gesture_model(small(data_dir, tmp_path, DT_MS=2.0, TRIAL_MS=60.0,
                                     CROP_START_MS=10.0))
    assert coarse.train_data.n_steps == 30
    assert not np.array_equal(coarse.train_data.spike_counts(), model.train_data.spike_counts())


def test_random_split_is_disjoint_and_sized(model, data_dir, tmp_path):
    p = validate(small(data_dir, tmp_path))
    train, evaluation = model.split(p)
    assert len(train) == 96 and len(evaluation) == 14
    assert not set(samples(train)) & set(samples(evaluation))
    assert samples(model.split(p)[0]) == samples(train)           # TRAIN_DATA_SEED fixes it
    train0, evaluation0 = model.split(dict(p, N_VALIDATE=0))
    assert len(train0) == 96 and evaluation0 is None
    assert samples(model.split(dict(p, TRAIN_DATA_SEED=7))[0]) != samples(train)


def test_folds_by_user_and_at_random(model, data_dir, tmp_path):
    p = validate(small(data_dir, tmp_path, N_FOLDS=5))
    folds = model.folds(p)
    assert [f for f, *_ in folds] == [0, 1, 2, 3, 4]
    validated = np.concatenate([v for _, _, v in folds])
    assert sorted(validated.tolist()) == list(range(110))         # every sample once
    for f, train_idx, eval_idx in folds:
        assert len(np.unique(model.train_users[eval_idx])) == 1   # 5 users, 5 folds
        assert not set(model.train_users[train_idx]) & set(model.train_users[eval_idx])
        assert len(train_idx) + len(eval_idx) == 110
    some = model.folds(dict(p, FOLDS=[3, 1]))
    assert [f for f, *_ in some] == [3, 1]
    assert np.array_equal(some[0][2], folds[3][2])
    random = model.folds(dict(p, FOLD_BY="random", N_FOLDS=4))
    assert sorted(len(v) for _, _, v in random) == [27, 27, 28, 28]
    assert any(len(np.unique(model.train_users[v])) > 1 for _, _, v in random)
    with pytest.raises(ValueError, match="N_FOLDS.*5 users"):
        model.folds(dict(p, N_FOLDS=6))


def test_reduced_classes_relabel_and_size_the_output(data_dir, tmp_path):
    p = small(data_dir, tmp_path, REDUCED_CLASSES=[7, 2], N_TRAIN=16, N_VALIDATE=4, N_EPOCH=1)
    reduced = DVS_gesture_model(p)
    assert reduced.n_classes == 2 and len(reduced.train_data) == 20
    assert sorted(set(reduced.train_data.labels)) == [0, 1]
    for label, name in zip(reduced.train_data.labels, reduced.train_files):
        assert name.endswith(f"{[7, 2][label]}.npy")
    assert len(reduced.train_users) == 20
    reduced.train(p)
    assert np.load(tmp_path / "dvs_w_hidden_output_last.npy").shape == (32, 2)


# --- training and the methods -------------------------------------------------------------------

def test_training_improves_accuracy_and_writes_its_files(model, data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=5, CHECKPOINT_BEST="validation")
    before = model.test(p)
    assert len(before) == 6 and before[-2] == 0.0 and before[-1] < 0.3
    *_, train_acc, test_acc = model.train_test(p)
    assert test_acc >= 0.9 and train_acc >= 0.8
    results = np.loadtxt(tmp_path / "dvs_results.txt")
    assert results.shape == (1 + 5, 6)                     # test() wrote the first line
    assert results[-1, 3] == pytest.approx(test_acc, abs=1e-6)
    with open(tmp_path / "dvs.json") as f:
        assert json.load(f)["N_EPOCH"] == 5
    for stem in ("w_input_hidden", "w_hidden_output"):
        assert (tmp_path / f"dvs_{stem}_last.npy").exists()
        assert (tmp_path / f"dvs_{stem}_best.npy").exists()
    assert np.load(tmp_path / "dvs_w_input_hidden_last.npy").shape == (2048, 32)
    q = small(data_dir, tmp_path, NAME="eval", LOAD_LAST=True, CHECKPOINT_NAME="dvs")
    *_, zero, again = model.test(q)
    assert zero == 0.0 and again == pytest.approx(test_acc)
    log = storage.load_epoch_log(str(tmp_path / "dvs_log.jsonl"))
    assert "test_acc" in log[-1]


def test_train_validates_on_the_split(model, data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=2, COLLECT_CONFUSION=True, REC_PREDICTIONS=True)
    out = model.train(p)
    assert len(out) == 6 and 0.0 <= out[-1] <= 1.0
    assert np.load(tmp_path / "dvs_confusion_train.npy").shape == (2, 11, 11)
    assert np.load(tmp_path / "dvs_confusion_eval.npy")[-1].sum() == 14
    assert np.load(tmp_path / "dvs_labels_train.npy").shape == (2, 96)
    log = storage.load_epoch_log(str(tmp_path / "dvs_log.jsonl"))
    assert [r["epoch"] for r in log] == [0, 1] and "validation_acc" in log[0]


def test_cross_validate_returns_and_fold_files(model, data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=1, N_FOLDS=5, FOLDS=[0, 3])
    accuracies, seconds = model.cross_validate(p)
    assert len(accuracies) == 2 and len(seconds) == 2 and all(s > 0 for s in seconds)
    for f in (0, 3):
        assert (tmp_path / f"dvs_fold{f}_results.txt").exists()
        with open(tmp_path / f"dvs_fold{f}.json") as fh:
            saved = json.load(fh)
        assert saved["FOLDS"] == [f] and saved["NAME"] == f"dvs_fold{f}"
    assert not (tmp_path / "dvs_fold1_results.txt").exists()
    w0 = model.make_network(validate(p)).net.params["w_input_hidden"]
    w1 = model.make_network(validate(p)).net.params["w_input_hidden"]
    assert np.array_equal(w0, w1)                      # MODEL_SEED: every fold starts alike


def test_augmentations_balancing_and_delay_line_run(model, data_dir, tmp_path):
    aug = {"NORMALISE_SPIKE_NUMBER": True, "spatial_shift": 2, "random_dilate": [0.9, 1.1]}
    p = validate(small(data_dir, tmp_path, N_EPOCH=1, AUGMENTATION=aug, N_INPUT_DELAY=2,
                       INPUT_DELAY=5.0, BALANCE_TRAIN_CLASSES=True, BALANCE_EVAL_CLASSES=True))
    train, evaluation = model.split(p)
    tr, ev, order = model.epoch_data(p, 0, train, evaluation)
    assert tr.n_channels == 3 * 2048 and sorted(order.tolist()) == list(range(len(tr)))
    counts = np.bincount(tr.data.labels, minlength=11)
    assert len(set(counts[counts > 0].tolist())) == 1                  # balanced
    assert tr.data.spike_counts().sum() < train.spike_counts().sum()
    again = model.epoch_data(p, 0, train, evaluation)[0]
    assert np.array_equal(again.data.channels, tr.data.channels)     # seed and epoch fix it
    model.train(p)
    assert np.load(tmp_path / "dvs_w_input_hidden_last.npy").shape == (3 * 2048, 32)


def test_parameters_are_json_serialisable_and_documented():
    json.dumps(default_p)
    from eventprop.config.dvs_gesture import PARAMETERS
    assert list(PARAMETERS) == list(default_p)           # every key has its entry, in order
    for key, parameter in PARAMETERS.items():
        assert parameter.meaning and parameter.default == default_p[key], key


def test_train_DVS_gesture_script(data_dir, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "train_DVS_gesture.py"), "--data", data_dir,
           "--out", str(tmp_path), "TRIAL_MS=50", "NUM_HIDDEN=8", "N_EPOCH=1",
           "PROGRESS=false", "N_BATCH=55"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    with open(tmp_path / "dvs.json") as f:
        saved = json.load(f)
    assert saved["NUM_HIDDEN"] == 8 and saved["DATA_DIR"] == data_dir
    bad = subprocess.run(cmd + ["NUM_HIDEN=3"], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert bad.returncode != 0 and "NUM_HIDEN" in bad.stderr
