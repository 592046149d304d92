"""DVS gesture data on small folders in tonic's DVSGesture layout: reading through tonic, the
microsecond -> millisecond conversion, downsampling and channel index, binning, cropping, the
cache, missing and malformed data, download, spatial shift."""
import os
import warnings

import numpy as np
import pytest

from eventprop.data import dvs as dvs_data
from eventprop.data.spikes import SpikeData

TRAIN_USERS = [(u, light) for u in (1, 2, 3, 4, 5) for light in ("fluorescent", "led")]
TEST_USERS = [(u, light) for u in (24, 25, 26, 27, 28) for light in ("lab", "natural")]


def gesture_events(label, rng, n=300, duration_ms=80.0, n_noise=10):
    """Events (x, y, p, t in ms) of a synthetic gesture of class ``label``: n events in the rows
    8 label .. 8 label + 7 of the sensor (rows 2 label, 2 label + 1 of the 32 x 32 input) with
    polarity label % 2, plus n_noise anywhere; times uniform in [0, duration_ms) with
    microsecond fractions, sorted."""
    x = np.concatenate([rng.integers(0, 128, n), rng.integers(0, 128, n_noise)])
    y = np.concatenate([8 * label + rng.integers(0, 8, n), rng.integers(0, 128, n_noise)])
    p = np.concatenate([np.full(n, label % 2), rng.integers(0, 2, n_noise)])
    t = np.round(rng.uniform(0.0, duration_ms, n + n_noise), 3)
    order = np.argsort(t, kind="stable")
    return x[order], y[order], p[order], t[order]


def write_gesture_dataset(root, seed=0, archives=True, **kw):
    """A data folder in tonic's DVSGesture layout under ``root`` (= DATA_DIR = tonic's save_to):
    DVSGesture/ibmGesture{Train,Test}/user<id>_<lighting>/<class>.npy, one recording of each of
    the 11 classes per folder (110 per split, so that tonic's own check, 100 files, passes), and
    with ``archives`` the (here empty) downloaded archives tonic looks for. Returns root."""
    rng = np.random.default_rng(seed)
    for split, users in (("train", TRAIN_USERS), ("test", TEST_USERS)):
        folder = dvs_data.split_folder(root, split)
        for user, light in users:
            for label in range(dvs_data.N_CLASSES):
                dvs_data.write_recording(os.path.join(folder, f"user{user:02d}_{light}",
                                                      f"{label}.npy"),
                                         *gesture_events(label, rng, **kw))
        if archives:
            open(os.path.join(str(root), "DVSGesture", dvs_data.ARCHIVES[split]), "wb").close()
    return str(root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_gesture_dataset(tmp_path_factory.mktemp("dvs"))


@pytest.fixture
def no_network(monkeypatch):
    """Fail if tonic tries to download anything."""
    import tonic.dataset

    def refuse(*args, **kwargs):
        raise AssertionError("tonic tried to download")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", refuse)


def one_recording(root, x, y, p, t_ms, split="train", name="user01_lab/3.npy"):
    path = os.path.join(dvs_data.split_folder(root, split), name)
    dvs_data.write_recording(path, x, y, p, t_ms)
    return path


# --- the layout and tonic -------------------------------------------------------------------

def test_tonic_reads_the_fixture_layout_itself(data_dir, no_network):
    """The unmodified tonic class finds every recording and returns the written events, with
    the time in microseconds (ms * 1000, truncated by tonic's cast to integers)."""
    import tonic.datasets
    ds = tonic.datasets.DVSGesture(save_to=data_dir, train=True)
    assert len(ds) == 110 and sorted(set(ds.targets)) == list(range(11))
    assert sorted(set(ds.users)) == [1, 2, 3, 4, 5]
    i = ds.targets.index(4)
    events, label = ds[i]
    raw = np.load(ds.data[i])
    assert label == 4 and events.dtype.names == ("x", "y", "p", "t")
    assert np.array_equal(events["x"], raw[:, 0]) and np.array_equal(events["y"], raw[:, 1])
    assert np.array_equal(events["t"], (raw[:, 3] * 1000).astype(np.int64))
    assert len(tonic.datasets.DVSGesture(save_to=data_dir, train=False)) == 110


def test_recordings_are_listed_in_a_fixed_order(data_dir):
    listed = dvs_data.list_recordings(data_dir, "train")
    assert len(listed) == 110
    keys = [(user, light, label) for _, user, light, label in listed]
    assert keys == sorted(keys)
    assert listed[0][0] == os.path.join("user01_fluorescent", "0.npy")


def test_missing_archive_needs_no_download(tmp_path, no_network):
    """tonic would download when the archive is missing; the unpacked recordings suffice."""
    root = write_gesture_dataset(tmp_path, archives=False, n=20)
    data, users, files = dvs_data.load_split(root, "test", 1.0, 50.0)
    assert len(data) == 110 and set(users) == {24, 25, 26, 27, 28}


# --- binning ----------------------------------------------------------------------------------

def events_of(x, y, p, t_us):
    e = np.zeros(len(x), dtype=[("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    e["x"], e["y"], e["p"], e["t"] = x, y, p, t_us
    return e


def test_microseconds_become_milliseconds():
    e = events_of([0, 4, 8, 12], [0, 0, 0, 0], [0, 0, 0, 0], [2500, 999, 1000, 49999])
    steps, channels = dvs_data.bin_events(e, 1.0, 100)
    assert dict(zip(channels.tolist(), steps.tolist())) == {0: 2, 2: 0, 4: 1, 6: 49}
    steps, channels = dvs_data.bin_events(e, 0.5, 100)
    assert dict(zip(channels.tolist(), steps.tolist())) == {0: 5, 2: 1, 4: 2, 6: 99}


def test_event_at_2500_us_lands_in_step_2_through_tonic(tmp_path):
    one_recording(tmp_path, [10, 20], [30, 40], [1, 0], [2.5, 0.75])
    data, users, files = dvs_data.load_split(str(tmp_path), "train", 1.0, 10.0)
    steps, channels = data.sample(0)
    assert steps.tolist() == [0, 2]
    assert channels.tolist() == [dvs_data.channel_index(20, 40, 0),
                                 dvs_data.channel_index(10, 30, 1)]
    assert data.labels.tolist() == [3] and users.tolist() == [1]
    assert files == [os.path.join("user01_lab", "3.npy")]


def test_downsampling_and_channel_index():
    assert dvs_data.channel_index(13, 70, 1) == ((70 // 4) * 32 + 13 // 4) * 2 + 1 == 1095
    assert dvs_data.channel_index(0, 0, 0) == 0
    assert dvs_data.channel_index(127, 127, 1) == 2047 == dvs_data.N_CHANNELS - 1
    assert dvs_data.channel_index(3, 3, 0) == dvs_data.channel_index(0, 0, 0)     # one pixel
    x, y, p = np.meshgrid(np.arange(128), np.arange(128), [0, 1], indexing="ij")
    c = dvs_data.channel_index(x.ravel(), y.ravel(), p.ravel())
    assert np.array_equal(np.bincount(c), np.full(2048, 16))     # 4 x 4 sensor pixels each
    assert np.array_equal(np.stack(dvs_data.channel_pixels(c)),
                          np.stack([x.ravel() // 4, y.ravel() // 4, p.ravel()]))


def test_one_spike_per_channel_and_step():
    """16 sensor pixels of one input pixel firing within one step give one spike; the other
    polarity and the next step are other spikes."""
    x, y = np.meshgrid(np.arange(4, 8), np.arange(8, 12))
    n = x.size
    e = events_of(np.r_[x.ravel(), x.ravel(), 4, 4], np.r_[y.ravel(), y.ravel(), 8, 8],
                  np.r_[np.zeros(n), np.zeros(n), 1, 0], np.r_[np.arange(n) * 50,
                                                               np.arange(n) * 60, 10, 1000])
    steps, channels = dvs_data.bin_events(e, 1.0, 10)
    c0 = dvs_data.channel_index(4, 8, 0)
    assert list(zip(steps.tolist(), channels.tolist())) == [(0, c0), (0, c0 + 1), (1, c0)]


def test_cropping_and_start_offset():
    e = events_of([0, 4, 8, 12], [0, 0, 0, 0], [0, 0, 0, 0], [100, 4999, 5000, 12000])
    steps, channels = dvs_data.bin_events(e, 1.0, 5)
    assert channels.tolist() == [0, 2] and steps.tolist() == [0, 4]
    steps, channels = dvs_data.bin_events(e, 1.0, 5, start_ms=4.0)
    assert channels.tolist() == [2, 4] and steps.tolist() == [0, 1]
    steps, _ = dvs_data.bin_events(e, 2.0, 10)
    assert steps.tolist() == [0, 2, 2, 6]


def test_loaded_split_is_binned_and_separable(data_dir):
    data, users, files = dvs_data.load_split(data_dir, "train", 1.0, 50.0)
    assert isinstance(data, SpikeData) and len(data) == 110
    assert data.n_steps == 50 and data.n_channels == 2048
    assert np.bincount(data.labels).tolist() == [10] * 11
    for i in range(len(data)):
        steps, channels = data.sample(i)
        assert len(set(zip(steps.tolist(), channels.tolist()))) == len(steps)
        x, y, p = dvs_data.channel_pixels(channels)
        c = data.labels[i]
        in_band = (y // 2 == c) & (p == c % 2)
        assert in_band.mean() > 0.8                    # the noise events are few
    full, _, _ = dvs_data.load_split(data_dir, "train", 1.0, 100.0)
    assert np.all(full.spike_counts() > data.spike_counts())    # events after 50 ms cropped


# --- cache ------------------------------------------------------------------------------------

def test_cache_is_reused_and_renewed(tmp_path, monkeypatch):
    root = write_gesture_dataset(tmp_path, n=20)
    first, _, _ = dvs_data.load_split(root, "train", 1.0, 50.0)
    cache = os.path.join(root, "DVSGesture", "cache")
    assert len(os.listdir(cache)) == 1
    real = dvs_data._bin_split

    def refuse(*args):
        raise AssertionError("binned again")

    monkeypatch.setattr(dvs_data, "_bin_split", refuse)
    again, users, files = dvs_data.load_split(root, "train", 1.0, 50.0)
    assert np.array_equal(again.steps, first.steps) and np.array_equal(again.labels,
                                                                       first.labels)
    assert len(files) == 110 and users[0] == 1
    monkeypatch.setattr(dvs_data, "_bin_split", real)
    dvs_data.load_split(root, "train", 2.0, 50.0)                     # other DT: other file
    dvs_data.load_split(root, "train", 1.0, 50.0, start_ms=10.0)
    assert len(os.listdir(cache)) == 3
    path = os.path.join(dvs_data.split_folder(root, "train"), "user01_led", "0.npy")
    dvs_data.write_recording(path, [0], [0], [0], [1.0])                # a changed recording
    changed, _, _ = dvs_data.load_split(root, "train", 1.0, 50.0)
    assert len(os.listdir(cache)) == 4
    i = files.index(os.path.join("user01_led", "0.npy"))
    assert changed.sample(i)[1].tolist() == [0]
    elsewhere = tmp_path / "elsewhere"
    dvs_data.load_split(root, "train", 1.0, 50.0, cache_dir=str(elsewhere))
    assert len(os.listdir(elsewhere)) == 1
    assert not [f for f in os.listdir(cache) if f.startswith(".tmp_")]


# --- missing and malformed data ---------------------------------------------------------------

def test_missing_data_names_the_folder_and_the_source(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as err:
        dvs_data.load_split(str(tmp_path / "nowhere"), "train", 1.0, 50.0)
    message = str(err.value)
    assert os.path.join("nowhere", "DVSGesture", "ibmGestureTrain") in message
    assert "research.ibm.com/interactive/dvsgesture" in message and "DOWNLOAD" in message
    os.makedirs(dvs_data.split_folder(tmp_path, "test"))                 # an empty folder
    with pytest.raises(FileNotFoundError, match="ibmGestureTest"):
        dvs_data.load_split(str(tmp_path), "test", 1.0, 50.0)


@pytest.mark.parametrize("content", ["garbage", "three_columns", "one_dim", "off_sensor",
                                     "pickled"])
def test_malformed_recording_is_named(tmp_path, content):
    path = os.path.join(dvs_data.split_folder(tmp_path, "train"), "user02_led", "5.npy")
    os.makedirs(os.path.dirname(path))
    if content == "garbage":
        with open(path, "wb") as f:
            f.write(b"not a numpy file")
    elif content == "three_columns":
        np.save(path, np.zeros((5, 3)))
    elif content == "one_dim":
        np.save(path, np.zeros(8))
    elif content == "off_sensor":
        dvs_data.write_recording(path, [3, 200], [5, 6], [0, 1], [1.0, 2.0])
    else:
        np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"user02_led.5\.npy"):
        dvs_data.load_split(str(tmp_path), "train", 1.0, 50.0)


def test_misnamed_files_and_folders_are_named(tmp_path):
    one_recording(tmp_path, [1], [1], [0], [1.0], name="user01_lab/three.npy")
    with pytest.raises(ValueError, match=r"three\.npy.*<class>\.npy"):
        dvs_data.load_split(str(tmp_path), "train", 1.0, 50.0)
    os.remove(os.path.join(dvs_data.split_folder(tmp_path, "train"), "user01_lab", "three.npy"))
    one_recording(tmp_path, [1], [1], [0], [1.0], name="user01_lab/11.npy")
    with pytest.raises(ValueError, match=r"11\.npy"):
        dvs_data.load_split(str(tmp_path), "train", 1.0, 50.0)
    os.remove(os.path.join(dvs_data.split_folder(tmp_path, "train"), "user01_lab", "11.npy"))
    one_recording(tmp_path, [1], [1], [0], [1.0], name="alice/1.npy")
    with pytest.raises(ValueError, match="alice.*user<number>_<lighting>"):
        dvs_data.load_split(str(tmp_path), "train", 1.0, 50.0)


def test_recordings_without_events_in_the_window_are_reported(data_dir):
    with pytest.warns(RuntimeWarning, match=r"110 of 110 .*\[200, 250\) ms.*user01_fluor"):
        data, _, _ = dvs_data.load_split(data_dir, "train", 1.0, 50.0, start_ms=200.0)
    assert len(data.steps) == 0


# --- download -----------------------------------------------------------------------------------

def test_download_lets_tonic_fetch_and_unpack(tmp_path, monkeypatch):
    """tonic's download (replaced here by writing the unpacked files) runs only with download
    and only when there are no recordings."""
    import tonic.dataset
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append(filename)
        split = "train" if "Train" in filename else "test"
        users = TRAIN_USERS if split == "train" else TEST_USERS
        rng = np.random.default_rng(1)
        for user, light in users:
            for label in range(11):
                dvs_data.write_recording(
                    os.path.join(download_root, dvs_data.SPLIT_FOLDERS[split],
                                 f"user{user:02d}_{light}", f"{label}.npy"),
                    *gesture_events(label, rng, n=5))
        open(os.path.join(download_root, filename), "wb").close()

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_download)
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError):
        dvs_data.load_split(root, "train", 1.0, 50.0)
    assert calls == []
    data, _, _ = dvs_data.load_split(root, "train", 1.0, 50.0, download=True)
    assert calls == ["ibmGestureTrain.tar.gz"] and len(data) == 110
    dvs_data.load_split(root, "train", 1.0, 50.0, download=True)
    assert calls == ["ibmGestureTrain.tar.gz"]                      # present: no second fetch
    assert dvs_data.download(root, "test").endswith("ibmGestureTest")
    assert calls[-1] == "ibmGestureTest.tar.gz"


def test_failed_download_names_the_source(tmp_path, monkeypatch):
    import tonic.dataset

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="no network.*research.ibm.com"):
        dvs_data.load_split(str(tmp_path), "test", 1.0, 50.0, download=True)


# --- spatial shift ------------------------------------------------------------------------------

def test_spatial_shift_moves_pixels_and_keeps_polarity():
    c = [dvs_data.channel_index(4 * x, 4 * y, p) for x, y, p in
         [(0, 0, 1), (10, 20, 0), (31, 31, 1), (15, 15, 0)]]
    data = SpikeData.from_lists([[0, 1, 2, 3]] * 50, [c] * 50, np.zeros(50, int), 5, 2048)
    rng = np.random.default_rng(3)
    out = dvs_data.spatial_shift(data, 3.0, rng)
    shifts = np.trunc(np.random.default_rng(3).uniform(-3.0, 3.0, size=(50, 2))).astype(int)
    assert np.abs(shifts).max() <= 2 and len(np.unique(shifts[:, 0])) == 5
    for i in range(50):
        dx, dy = shifts[i]
        expect = []
        for step, (x, y, p) in enumerate([(0, 0, 1), (10, 20, 0), (31, 31, 1), (15, 15, 0)]):
            if 0 <= x + dx < 32 and 0 <= y + dy < 32:
                expect.append((step, ((y + dy) * 32 + x + dx) * 2 + p))
        steps, channels = out.sample(i)
        assert list(zip(steps.tolist(), channels.tolist())) == expect
    same = dvs_data.spatial_shift(data, 0.0, rng)
    assert np.array_equal(same.channels, data.channels)


def test_write_recording_checks_lengths(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        dvs_data.write_recording(tmp_path / "x.npy", [1, 2], [1], [0], [1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dvs_data.write_recording(tmp_path / "a" / "y.npy", [1], [2], [1], [0.5])
    assert np.load(tmp_path / "a" / "y.npy").tolist() == [[1.0, 2.0, 1.0, 0.5]]
