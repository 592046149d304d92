"""Bad data never pass silently: the readers refuse labels, channels and coordinates out of range
(naming the file, the sample and the value); the simulators refuse empty or short parts and
REDUCED_CLASSES without samples, checking the sizes before the data are binned; a cache folder
that cannot be written falls back to the user's cache folder."""
import os
import shutil

import numpy as np
import pytest

from eventprop.data import dvs as dvs_data
from eventprop.data import shd as shd_data
from eventprop.data.mnist import read_idx
from eventprop.simulators.dvs_gesture import DVS_gesture_model
from eventprop.simulators.dvs_gesture import p as dvs_p
from eventprop.simulators.mnist import mnist_model
from eventprop.simulators.mnist import p as mnist_p
from eventprop.simulators.shd import SHD_model
from eventprop.simulators.shd import p as shd_p
from eventprop.simulators.smnist import SMNIST_model
from eventprop.simulators.smnist import p as smnist_p
from eventprop.simulators.yinyang import yinyang
from eventprop.simulators.yinyang import p as yinyang_p
from official_files import write_dataset, write_h5
from test_dvs_data import write_gesture_dataset
from test_mnist_data import LABEL_MAGIC, idx_bytes, write_mnist


def shd(data_dir, out, **kw):
    return dict(shd_p, DATA_DIR=str(data_dir), OUT_DIR=str(out), NAME="shd", TRIAL_MS=100.0,
                NUM_HIDDEN=8, N_BATCH=8, N_EPOCH=1, PROGRESS=False, **kw)


def dvs(data_dir, out, **kw):
    return dict(dvs_p, DATA_DIR=str(data_dir), OUT_DIR=str(out), NAME="dvs", TRIAL_MS=50.0,
                NUM_HIDDEN=8, N_BATCH=8, N_EPOCH=1, PROGRESS=False, **kw)


def small_shd_file(path, labels, units=None, speakers=None):
    """An official-layout file with one spike per sample (channel ``units[i]``, default 3)."""
    units = [3] * len(labels) if units is None else units
    write_h5(path, [[0.01]] * len(labels), [[u] for u in units], labels, speakers=speakers)


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd")
    write_dataset(root, "SHD", n_train=10, n_test=8, n_classes=3, n_speakers=2)
    return root


@pytest.fixture(scope="module")
def dvs_dir(tmp_path_factory):
    return write_gesture_dataset(tmp_path_factory.mktemp("dvs"), n=30)


def nothing_written(out):
    return not os.path.exists(out) or not os.listdir(out)


# --- the readers ----------------------------------------------------------------------------

def test_shd_labels_out_of_range_name_the_file_sample_and_value(tmp_path):
    small_shd_file(tmp_path / "shd_train.h5", [0, 3, 25, 1])
    with pytest.raises(ValueError, match=r"shd_train\.h5: sample 2 has label 25, but SHD has "
                                         r"20 classes"):
        shd_data.read_h5(tmp_path / "shd_train.h5")
    with pytest.raises(ValueError, match=r"sample 2 has label 25"):
        shd_data.read_labels(tmp_path / "shd_train.h5")
    small_shd_file(tmp_path / "ssc_test.h5", [0, 34, 35])
    with pytest.raises(ValueError, match=r"ssc_test\.h5: sample 2 has label 35, but SSC has "
                                         r"35 classes"):
        shd_data.read_h5(tmp_path / "ssc_test.h5")


def test_shd_channels_beyond_700_are_refused_not_dropped(tmp_path):
    small_shd_file(tmp_path / "shd_train.h5", [0, 1, 2], units=[5, 699, 700])
    with pytest.raises(ValueError, match=r"shd_train\.h5: sample 2 has channel 700, but SHD "
                                         r"and SSC have 700 channels"):
        shd_data.read_h5(tmp_path / "shd_train.h5")
    with pytest.raises(ValueError, match="channel 700"):
        shd_data.load_dataset(tmp_path, "SHD", "train", 1.0, 100.0)


def test_dvs_coordinates_outside_the_sensor_name_the_event(tmp_path):
    root = write_gesture_dataset(tmp_path, n=5, n_noise=0)
    path = os.path.join(dvs_data.split_folder(root, "train"), "user01_fluorescent", "4.npy")
    dvs_data.write_recording(path, [3, 5, 130], [1, 2, 3], [0, 1, 0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"4\.npy: event 2 has x = 130, outside the 128 x 128"):
        dvs_data.load_split(root, "train", 1.0, 50.0)


def test_dvs_label_from_the_file_name_names_the_value(tmp_path):
    root = write_gesture_dataset(tmp_path, n=5, n_noise=0)
    folder = os.path.join(dvs_data.split_folder(root, "train"), "user01_fluorescent")
    os.rename(os.path.join(folder, "4.npy"), os.path.join(folder, "12.npy"))
    with pytest.raises(ValueError, match=r"12\.npy: label 12 \(the file name\), but DVS gesture "
                                         r"has 11 classes"):
        dvs_data.list_recordings(root, "train")


def test_mnist_label_names_the_sample_and_value(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.array([1, 2, 3, 12, 4], dtype=np.uint8), LABEL_MAGIC))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: sample 3 has label 12, but "
                                         r"MNIST has 10 classes"):
        read_idx(path, "labels")


# --- SHD / SSC ------------------------------------------------------------------------------

def test_shd_validation_part_holding_every_sample_is_refused(shd_dir, tmp_path):
    out = tmp_path / "out"
    p = shd(shd_dir, out)                                 # N_VALIDATE = 512 by default
    model = SHD_model(p)
    with pytest.raises(ValueError, match=r"SHD training part: 0 samples \(.*shd_train\.h5 has "
                                         r"10, N_VALIDATE = 512 of them are held out\)"):
        model.train(p)
    assert nothing_written(out)
    with pytest.raises(ValueError, match=r"has 7 of the REDUCED_CLASSES, N_VALIDATE = 7"):
        model.train(dict(p, N_VALIDATE=7, REDUCED_CLASSES=[0, 2]))


def test_shd_sizes_are_checked_before_the_data_are_binned(shd_dir, tmp_path, monkeypatch):
    p = shd(shd_dir, tmp_path, N_VALIDATE=4)
    model = SHD_model(p)

    def refuse(*args, **kwargs):
        raise AssertionError("the data were binned before the sizes were checked")

    monkeypatch.setattr(shd_data, "read_h5", refuse)
    with pytest.raises(ValueError, match="SHD training part: 0 samples"):
        model.train(dict(p, DT_MS=2.0, N_VALIDATE=10))


def test_shd_speaker_split_without_other_speakers_is_refused(tmp_path):
    folder = tmp_path / "SHD"
    folder.mkdir()
    small_shd_file(folder / "shd_train.h5", [0, 1, 2, 0], speakers=[7, 7, 7, 7])
    small_shd_file(folder / "shd_test.h5", [0, 1, 2])
    p = shd(tmp_path, tmp_path / "out", EVALUATION="speaker", SPEAKER_LEFT=[0])
    with pytest.raises(ValueError, match=r"SHD training part: 0 samples \(all 4 samples of "
                                         r".*shd_train\.h5 are by speaker 7"):
        SHD_model(p).train(p)
    with pytest.raises(ValueError, match="SHD training part: 0 samples"):
        SHD_model(p).cross_validate(p)
    assert nothing_written(tmp_path / "out")


def test_shd_empty_file_is_refused(tmp_path):
    folder = tmp_path / "SHD"
    folder.mkdir()
    small_shd_file(folder / "shd_train.h5", [0, 1, 2])
    small_shd_file(folder / "shd_test.h5", [])
    with pytest.raises(ValueError, match=r"SHD test file .*shd_test\.h5 holds no samples"):
        SHD_model(shd(tmp_path, tmp_path / "out"))


def test_shd_label_out_of_range_is_refused_by_the_simulator(tmp_path):
    folder = tmp_path / "SHD"
    folder.mkdir()
    small_shd_file(folder / "shd_train.h5", [0, 1, 20])
    small_shd_file(folder / "shd_test.h5", [0, 1, 2])
    with pytest.raises(ValueError, match=r"shd_train\.h5: sample 2 has label 20"):
        SHD_model(shd(tmp_path, tmp_path / "out"))


@pytest.mark.parametrize("dataset", ["SHD", "SSC"])
def test_reduced_class_without_samples_is_named_with_the_file(tmp_path, dataset):
    write_dataset(tmp_path, dataset, n_train=9, n_test=6, n_valid=6, n_classes=3)
    p = shd(tmp_path, tmp_path / "out", DATA_SET=dataset, REDUCED_CLASSES=[1, 3],
            EVALUATION="random")
    name = f"{dataset.lower()}_train"
    with pytest.raises(ValueError, match=rf"REDUCED_CLASSES.*class 3 has no samples in "
                                         rf".*{name}\.h5 \(its classes: 0, 1, 2\)"):
        SHD_model(p)


# --- DVS gesture ----------------------------------------------------------------------------

def test_dvs_fewer_recordings_than_n_train_is_refused(dvs_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    p = dvs(dvs_dir, out, N_TRAIN=100, N_VALIDATE=14)      # 110 training recordings
    model = DVS_gesture_model(p)

    def refuse(*args, **kwargs):
        raise AssertionError("the data were binned before the sizes were checked")

    monkeypatch.setattr(dvs_data, "_bin_split", refuse)
    with pytest.raises(ValueError, match=r"DVS gesture training part: 96 recordings, fewer than "
                                         r"N_TRAIN = 100 \(.*ibmGestureTrain has 110, "
                                         r"N_VALIDATE = 14 of them are held out\)"):
        model.train(dict(p, DT_MS=2.0))
    with pytest.raises(ValueError, match=r"0 recordings, fewer than N_TRAIN = 1045 .*has 20 of "
                                         r"the REDUCED_CLASSES, N_VALIDATE = 32"):
        model.train(dvs(dvs_dir, out, REDUCED_CLASSES=[0, 1]))      # the defaults
    with pytest.raises(ValueError, match=r"N_FOLDS.*more folds than the 10 training recordings"):
        model.cross_validate(dict(p, REDUCED_CLASSES=[4], FOLD_BY="random", N_FOLDS=11))
    assert nothing_written(out)


def test_dvs_reduced_class_without_recordings_is_named_with_the_folder(tmp_path):
    root = write_gesture_dataset(tmp_path, n=5, n_noise=0)
    for folder, _, files in os.walk(dvs_data.split_folder(root, "test")):
        if "5.npy" in files:
            os.remove(os.path.join(folder, "5.npy"))
    with pytest.raises(ValueError, match=r"REDUCED_CLASSES.*class 5 has no samples in "
                                         r".*ibmGestureTest"):
        DVS_gesture_model(dvs(root, tmp_path / "out", REDUCED_CLASSES=[2, 5]))


# --- MNIST and sequential MNIST -------------------------------------------------------------

@pytest.mark.parametrize("model,defaults", [(mnist_model, mnist_p), (SMNIST_model, smnist_p)])
def test_mnist_reduced_digit_without_images_is_named_with_the_file(tmp_path, model, defaults):
    write_mnist(tmp_path, n_train=40, n_test=20, n_classes=6)
    p = dict(defaults, DATA_DIR=str(tmp_path), OUT_DIR=str(tmp_path / "out"),
             REDUCED_CLASSES=[2, 7], PROGRESS=False)
    with pytest.raises(ValueError, match=r"REDUCED_CLASSES.*class 7 has no samples in "
                                         r".*train-labels-idx1-ubyte"):
        model(p)


# --- Yin-Yang -------------------------------------------------------------------------------

def test_yinyang_more_folds_than_samples_is_refused(tmp_path):
    p = dict(yinyang_p, OUT_DIR=str(tmp_path / "out"), NAME="yy", N_TRAIN=1, N_TEST=1,
             NUM_HIDDEN=4, N_BATCH=2, N_EPOCH=1, N_FOLDS=5, PROGRESS=False)
    with pytest.raises(ValueError, match=r"N_FOLDS.*more folds than the 3 training samples"):
        yinyang(p).cross_validate(p)
    assert nothing_written(tmp_path / "out")


# --- the cache folder -----------------------------------------------------------------------

def test_shd_cache_falls_back_to_the_user_cache_folder(shd_dir, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    shutil.copytree(shd_dir / "SHD", data_dir / "SHD", ignore=shutil.ignore_patterns("cache"))
    (data_dir / "SHD" / "cache").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.warns(RuntimeWarning, match=r"SHD cache folder .*SHD/cache .*cannot be written; "
                                            r"the binned data are cached in .*xdg/eventprop/SHD"):
        first, _ = shd_data.load_dataset(data_dir / "SHD", "SHD", "train", 1.0, 100.0)
    assert len(os.listdir(tmp_path / "xdg" / "eventprop" / "SHD")) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the cache in the user cache folder was not read")

    monkeypatch.setattr(shd_data, "read_h5", refuse)
    again, _ = shd_data.load_dataset(data_dir / "SHD", "SHD", "train", 1.0, 100.0)
    assert np.array_equal(again.labels, first.labels)
    monkeypatch.undo()
    with pytest.raises(OSError, match=r"cannot write the binned SHD data into .*cache .*; set "
                                      r"p\['CACHE_DIR'\] to a folder you can write"):
        shd_data.load_dataset(data_dir / "SHD", "SHD", "test", 1.0, 100.0,
                              cache_dir=data_dir / "SHD" / "cache")


def test_dvs_cache_falls_back_to_the_user_cache_folder(tmp_path, monkeypatch):
    root = write_gesture_dataset(tmp_path / "data", n=5, n_noise=0)
    (tmp_path / "data" / "DVSGesture" / "cache").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.warns(RuntimeWarning, match=r"DVSGesture cache folder .* cannot be written; .* "
                                            r"cached in .*xdg/eventprop/DVSGesture"):
        dvs_data.load_split(root, "test", 1.0, 50.0)
    assert len(os.listdir(tmp_path / "xdg" / "eventprop" / "DVSGesture")) == 1
