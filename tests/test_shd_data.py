"""eventprop.data.shd: reading official-layout SHD/SSC files, binning and the .npz cache, on
small files written here with PyTables in the official layout."""
import os
import sys
import urllib.error
import zipfile

import numpy as np
import pytest

from official_files import write_h5

from eventprop.data import shd as shd_data
from eventprop.data.shd import DATA_FILES, bin_spikes, download, load_dataset, read_h5


def make_samples(n, n_classes=20, n_speakers=4, seed=0):
    """n random samples with spike times at bin centres (0.5 ms off the 1 ms edges) in
    [0, 1.2) s, channels in [0, 700), a few duplicate (channel, ms) spikes per sample."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for _ in range(n):
        k = int(rng.integers(5, 60))
        ms = rng.integers(0, 1200, size=k)
        ch = rng.integers(0, 700, size=k)
        ms = np.concatenate([ms, ms[:3]])          # exact duplicates
        ch = np.concatenate([ch, ch[:3]])
        order = np.argsort(ms, kind="stable")
        times.append((ms[order] + 0.5) / 1000.0)
        units.append(ch[order])
    labels = rng.integers(0, n_classes, size=n)
    speakers = np.arange(n) % n_speakers
    return times, units, labels, speakers


@pytest.fixture
def shd_dir(tmp_path):
    times, units, labels, speakers = make_samples(36)
    write_h5(tmp_path / "shd_train.h5", times, units, labels, speakers)
    return tmp_path, (times, units, labels, speakers)


# ----------------------------------------------------------------------------------------------
# read_h5
# ----------------------------------------------------------------------------------------------

def test_read_h5_returns_spikes_labels_and_speakers(shd_dir):
    folder, (times, units, labels, speakers) = shd_dir
    d = read_h5(folder / "shd_train.h5")
    assert len(d.times) == len(d.units) == len(d.labels) == 36
    np.testing.assert_array_equal(d.labels, labels)
    np.testing.assert_array_equal(d.speakers, speakers)
    assert sorted(set(d.speakers.tolist())) == [0, 1, 2, 3]
    for i in (0, 17, 35):
        np.testing.assert_allclose(d.times[i], times[i], rtol=1e-6)
        np.testing.assert_array_equal(d.units[i], units[i])


def test_read_h5_without_speakers_gives_none(tmp_path):
    times, units, labels, _ = make_samples(12, n_classes=35)
    write_h5(tmp_path / "ssc_valid.h5", times, units, labels)
    d = read_h5(tmp_path / "ssc_valid.h5")
    assert d.speakers is None
    np.testing.assert_array_equal(d.labels, labels)


def test_read_h5_missing_file_names_path_and_source(tmp_path):
    path = tmp_path / "shd_test.h5"
    with pytest.raises(FileNotFoundError) as e:
        read_h5(path)
    assert str(path) in str(e.value)
    assert "zenkelab.org/datasets" in str(e.value)
    assert "DOWNLOAD=True" in str(e.value) and "eventprop.data.shd.download" in str(e.value)


def test_read_h5_text_file_raises_value_error_naming_file(tmp_path):
    path = tmp_path / "shd_train.h5"
    path.write_text("this is not an HDF5 file\n")
    with pytest.raises(ValueError) as e:
        read_h5(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("missing, node", [("labels", "/labels"), ("units", "/spikes/units"),
                                           ("times", "/spikes/times")])
def test_read_h5_missing_node_raises_value_error_naming_file_and_node(tmp_path, missing, node):
    times, units, labels, speakers = make_samples(5)
    path = tmp_path / "shd_train.h5"
    write_h5(path, times, units, labels, speakers, skip=(missing,))
    with pytest.raises(ValueError) as e:
        read_h5(path)
    assert str(path) in str(e.value) and node in str(e.value)


def test_read_h5_times_units_length_mismatch_names_sample(tmp_path):
    times, units, labels, speakers = make_samples(6)
    units[4] = units[4][:-1]
    path = tmp_path / "shd_train.h5"
    write_h5(path, times, units, labels, speakers)
    with pytest.raises(ValueError) as e:
        read_h5(path)
    assert str(path) in str(e.value) and "sample 4" in str(e.value)


# ----------------------------------------------------------------------------------------------
# bin_spikes
# ----------------------------------------------------------------------------------------------

def test_bin_spikes_floors_to_bins_and_keeps_distinct_spikes():
    t = np.array([0.0, 0.0004, 0.0015, 0.0029, 0.0101, 0.0101])
    u = np.array([3, 3, 3, 8, 699, 0])
    s, c = bin_spikes(t, u, dt_ms=1.0, n_steps=20)
    # 0 and 0.4 ms share (ch 3, step 0) -> merged; the rest are distinct and all kept
    assert list(zip(s.tolist(), c.tolist())) == [(0, 3), (1, 3), (2, 8), (10, 0), (10, 699)]


def test_bin_spikes_at_most_one_spike_per_channel_and_step():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 0.05, 2000)
    u = rng.integers(0, 10, 2000)
    s, c = bin_spikes(t, u, dt_ms=1.0, n_steps=50)
    pairs = set(zip(s.tolist(), c.tolist()))
    assert len(pairs) == len(s)
    # every occupied (channel, ms) bin of the input is present
    expect = set(zip(np.floor(t * 1000).astype(int).tolist(), u.tolist()))
    assert pairs == expect
    assert np.all(np.diff(s) >= 0)


def test_bin_spikes_truncates_to_integer_microseconds():
    # 0.9999996 ms -> 999 us (truncated, not rounded) -> bin 0, not bin 1
    s, _ = bin_spikes([0.0009999996], [5], dt_ms=1.0, n_steps=5)
    assert s.tolist() == [0]


def test_bin_spikes_drops_spikes_beyond_trial():
    t = np.array([0.0005, 0.0095, 0.010, 0.0105, 0.5])
    u = np.array([1, 2, 3, 4, 5])
    s, c = bin_spikes(t, u, dt_ms=1.0, n_steps=10)
    assert s.tolist() == [0, 9] and c.tolist() == [1, 2]


def test_bin_spikes_with_coarser_dt():
    t = np.array([0.0005, 0.0045, 0.0055, 0.0199])
    u = np.array([7, 7, 7, 7])
    s, _ = bin_spikes(t, u, dt_ms=5.0, n_steps=4)
    assert s.tolist() == [0, 1, 3]


def test_bin_spikes_rescale_x_pools_channels():
    t = np.full(6, 0.0025)
    u = np.array([0, 1, 2, 3, 4, 699])
    s, c = bin_spikes(t, u, dt_ms=1.0, n_steps=10, rescale_x=0.5)
    assert c.tolist() == [0, 1, 2, 349]       # 0,1 -> 0; 2,3 -> 1; 4 -> 2; 699 -> 349
    assert s.tolist() == [2, 2, 2, 2]


def test_bin_spikes_rescale_t_scales_bins_and_crops_before_scaling():
    t = np.array([0.0035, 0.0075, 0.0105, 0.0155])
    u = np.array([1, 1, 1, 1])
    # rescale 0.5: bins 3, 7 -> 1, 3; spikes past the 10 ms trial are cropped before scaling
    s, _ = bin_spikes(t, u, dt_ms=1.0, n_steps=10, rescale_t=0.5)
    assert s.tolist() == [1, 3]
    # rescale 2: bins 3 -> 6; 7 -> 14 falls beyond the trial
    s, _ = bin_spikes(t, u, dt_ms=1.0, n_steps=10, rescale_t=2.0)
    assert s.tolist() == [6]


def test_bin_spikes_rescale_t_merges_into_one_spike_per_step():
    t = np.array([0.0005, 0.0015, 0.0025, 0.0035])
    u = np.array([9, 9, 9, 9])
    s, c = bin_spikes(t, u, dt_ms=1.0, n_steps=10, rescale_t=0.5)
    assert s.tolist() == [0, 1] and c.tolist() == [9, 9]


# ----------------------------------------------------------------------------------------------
# load_dataset and its cache
# ----------------------------------------------------------------------------------------------

def test_load_dataset_bins_all_samples(shd_dir):
    folder, (times, units, labels, speakers) = shd_dir
    data, spk = load_dataset(folder, "SHD", "train", dt_ms=1.0, trial_ms=1000.0)
    assert len(data) == 36 and data.n_steps == 1000 and data.n_channels == 700
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(spk, speakers)
    for i in (0, 9, 35):
        s, c = data.sample(i)
        es, ec = bin_spikes(times[i], units[i], 1.0, 1000)
        np.testing.assert_array_equal(s, es)
        np.testing.assert_array_equal(c, ec)
        # distinct (channel, ms) pairs below 1000 ms, from the generator's bin-centred times
        ms = np.floor(np.asarray(times[i]) * 1000).astype(int)
        expect = {(m, ch) for m, ch in zip(ms.tolist(), units[i].tolist()) if m < 1000}
        assert set(zip(s.tolist(), c.tolist())) == expect


def test_load_dataset_uses_cache_on_second_call(shd_dir, monkeypatch):
    folder, _ = shd_dir
    first, spk1 = load_dataset(folder, "SHD", "train", dt_ms=2.0, trial_ms=800.0,
                               rescale_x=0.5)
    cached = [f for f in os.listdir(folder / "cache") if f.endswith(".npz")]
    assert len(cached) == 1

    def fail(path):
        raise AssertionError("read_h5 called although the cache is valid")

    monkeypatch.setattr(shd_data, "read_h5", fail)
    second, spk2 = load_dataset(folder, "SHD", "train", dt_ms=2.0, trial_ms=800.0,
                                rescale_x=0.5)
    np.testing.assert_array_equal(first.steps, second.steps)
    np.testing.assert_array_equal(first.channels, second.channels)
    np.testing.assert_array_equal(first.offsets, second.offsets)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(spk1, spk2)
    assert second.n_steps == 400 and second.channels.max() < 350
    # other parameters are another cache entry, hence a new read
    with pytest.raises(AssertionError, match="read_h5 called"):
        load_dataset(folder, "SHD", "train", dt_ms=1.0, trial_ms=800.0, rescale_x=0.5)


def test_load_dataset_changed_file_invalidates_cache(shd_dir, tmp_path):
    folder, _ = shd_dir
    cache = tmp_path / "elsewhere"
    a, _ = load_dataset(folder, "SHD", "train", 1.0, 1000.0, cache_dir=cache)
    times, units, labels, speakers = make_samples(7, seed=5)
    path = folder / "shd_train.h5"
    write_h5(path, times, units, labels, speakers)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # surely a new mtime
    b, spk = load_dataset(folder, "SHD", "train", 1.0, 1000.0, cache_dir=cache)
    assert len(a) == 36 and len(b) == 7
    np.testing.assert_array_equal(b.labels, labels)
    assert len(os.listdir(cache)) == 2
    assert not (folder / "cache").exists()


def test_load_dataset_ssc_without_speakers(tmp_path):
    times, units, labels, _ = make_samples(10, n_classes=35, seed=3)
    write_h5(tmp_path / "ssc_valid.h5", times, units, labels)
    data, spk = load_dataset(tmp_path, "SSC", "valid", 1.0, 1000.0)
    assert spk is None and len(data) == 10
    data2, spk2 = load_dataset(tmp_path, "SSC", "valid", 1.0, 1000.0)   # from the cache
    assert spk2 is None
    np.testing.assert_array_equal(data2.steps, data.steps)


def test_load_dataset_missing_file_names_file_and_source(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset(tmp_path, "SSC", "test", 1.0, 1000.0)
    assert "ssc_test.h5" in str(e.value) and "zenkelab.org/datasets" in str(e.value)


def test_load_dataset_malformed_file_names_file(tmp_path):
    (tmp_path / "shd_test.h5").write_text("garbage")
    with pytest.raises(ValueError) as e:
        load_dataset(tmp_path, "SHD", "test", 1.0, 1000.0)
    assert "shd_test.h5" in str(e.value)


def test_load_dataset_rejects_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ValueError) as e:
        load_dataset(tmp_path, "MNIST", "train", 1.0, 1000.0)
    assert "'SHD'" in str(e.value) and "'SSC'" in str(e.value)
    with pytest.raises(ValueError) as e:
        load_dataset(tmp_path, "SHD", "valid", 1.0, 1000.0)
    assert "'train'" in str(e.value) and "'test'" in str(e.value)


def test_data_files_table():
    assert DATA_FILES["SHD"] == {"train": "shd_train.h5", "test": "shd_test.h5"}
    assert set(DATA_FILES["SSC"]) == {"train", "valid", "test"}


# ----------------------------------------------------------------------------------------------
# download (tonic, faked: nothing touches the network)
# ----------------------------------------------------------------------------------------------

def _patch_tonic(monkeypatch, fetch):
    """Replace tonic.datasets.SHD / SSC by subclasses whose ``download`` is ``fetch``; the real
    constructors decide the folder (save_to/<class name>) and the file names. Returns the list
    of the instances tonic's download was called on."""
    datasets = pytest.importorskip("tonic.datasets")
    calls = []

    def download_method(self):
        calls.append(self)
        fetch(self)

    # the class names must stay SHD / SSC: tonic's folder is save_to/<class name>
    class SHD(datasets.SHD):
        download = download_method

    class SSC(datasets.SSC):
        download = download_method

    monkeypatch.setattr(datasets, "SHD", SHD)
    monkeypatch.setattr(datasets, "SSC", SSC)
    return calls


@pytest.fixture
def fake_tonic(monkeypatch):
    """tonic whose download writes the archive of a small official-layout file (9 samples)
    where the real one saves it and extracts it with tonic's own extract_archive."""
    from tonic.download_utils import extract_archive

    def fetch(ds):
        os.makedirs(ds.location_on_system, exist_ok=True)
        part = os.path.join(ds.location_on_system, ds.data_filename + ".part")
        times, units, labels, speakers = make_samples(9, seed=11)
        write_h5(part, times, units, labels, speakers, keys=["zero", "one"])
        archive = os.path.join(ds.location_on_system, ds.filename)
        with zipfile.ZipFile(archive, "w") as z:
            z.write(part, arcname=ds.data_filename)
        os.remove(part)
        extract_archive(archive, ds.location_on_system)

    return _patch_tonic(monkeypatch, fetch)


@pytest.fixture
def offline_tonic(monkeypatch):
    """tonic without network: like the real download it leaves an empty archive, then fails."""
    def fetch(ds):
        os.makedirs(ds.location_on_system, exist_ok=True)
        open(os.path.join(ds.location_on_system, ds.filename), "wb").close()
        raise urllib.error.URLError("no network in this test")

    return _patch_tonic(monkeypatch, fetch)


def test_load_dataset_with_download_fetches_missing_file_via_tonic(tmp_path, fake_tonic):
    folder = tmp_path / "SHD"
    data, spk = load_dataset(folder, "SHD", "train", 1.0, 1000.0, download=True)
    times, units, labels, speakers = make_samples(9, seed=11)
    assert len(data) == 9
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(spk, speakers)
    s, c = data.sample(3)
    es, ec = bin_spikes(times[3], units[3], 1.0, 1000)
    np.testing.assert_array_equal(s, es)
    np.testing.assert_array_equal(c, ec)
    # tonic's layout: the archive and the file side by side in save_to/SHD = data_dir
    assert len(fake_tonic) == 1 and fake_tonic[0].location_on_system == str(folder)
    assert sorted(p.name for p in folder.glob("*.h5*")) == ["shd_train.h5", "shd_train.h5.zip"]
    # present now: no second download
    load_dataset(folder, "SHD", "train", 2.0, 1000.0, download=True)
    assert len(fake_tonic) == 1


@pytest.mark.parametrize("dataset, split", [("SHD", "test"), ("SSC", "train"),
                                            ("SSC", "valid"), ("SSC", "test")])
def test_download_puts_each_split_at_data_dir(tmp_path, fake_tonic, dataset, split):
    folder = tmp_path / "data" / dataset
    path = download(folder, dataset, split)
    assert path == os.path.join(str(folder), DATA_FILES[dataset][split])
    assert read_h5(path).labels.shape == (9,)
    assert [ds.data_filename for ds in fake_tonic] == [DATA_FILES[dataset][split]]


def test_download_keeps_present_file_without_tonic(shd_dir, tmp_path, offline_tonic):
    folder = tmp_path / "SHD"
    folder.mkdir()
    os.replace(shd_dir[0] / "shd_train.h5", folder / "shd_train.h5")
    assert download(folder, "SHD", "train") == os.path.join(str(folder), "shd_train.h5")
    data, _ = load_dataset(folder, "SHD", "train", 1.0, 1000.0, download=True)
    assert len(data) == 36 and offline_tonic == []


def test_load_dataset_missing_file_without_download_does_not_call_tonic(tmp_path,
                                                                       offline_tonic):
    folder = tmp_path / "SHD"
    with pytest.raises(FileNotFoundError) as e:
        load_dataset(folder, "SHD", "test", 1.0, 1000.0)
    assert str(folder / "shd_test.h5") in str(e.value)
    assert "zenkelab.org/datasets" in str(e.value) and "DOWNLOAD=True" in str(e.value)
    assert offline_tonic == [] and not folder.exists()


def test_download_tonic_failure_raises_runtime_error_naming_file(tmp_path, offline_tonic):
    folder = tmp_path / "SSC"
    with pytest.raises(RuntimeError) as e:
        load_dataset(folder, "SSC", "valid", 1.0, 1000.0, download=True)
    msg = str(e.value)
    assert "ssc_valid.h5" in msg and "zenkelab.org/datasets" in msg
    assert "no network in this test" in msg
    assert isinstance(e.value.__cause__, urllib.error.URLError)
    # the empty archive left behind would stop tonic from trying again: the message says so
    assert str(folder / "ssc_valid.h5.zip") in msg and len(offline_tonic) == 1


def test_download_leftover_archive_is_named_when_tonic_skips_download(tmp_path, fake_tonic):
    folder = tmp_path / "SHD"
    download(folder, "SHD", "test")
    open(folder / "shd_train.h5.zip", "wb").close()    # e.g. an interrupted earlier download
    with pytest.raises(RuntimeError) as e:
        download(folder, "SHD", "train")
    assert "shd_train.h5" in str(e.value) and str(folder / "shd_train.h5.zip") in str(e.value)
    assert len(fake_tonic) == 1                         # tonic saw the archive and skipped


def test_download_requires_folder_named_like_dataset(tmp_path, fake_tonic):
    for folder, dataset in ((tmp_path / "shd", "SHD"), (tmp_path / "SHD", "SSC")):
        with pytest.raises(ValueError) as e:
            download(folder, dataset, "train")
        assert str(folder) in str(e.value) and f"/{dataset}" in str(e.value)
    assert fake_tonic == []


def test_download_without_tonic_asks_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tonic", None)
    monkeypatch.setitem(sys.modules, "tonic.datasets", None)
    with pytest.raises(ImportError, match="pip install tonic"):
        download(tmp_path / "SHD", "SHD", "train")


def test_download_rejects_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ValueError, match="'SHD'"):
        download(tmp_path / "MNIST", "MNIST", "train")
    with pytest.raises(ValueError, match="'valid'"):
        download(tmp_path / "SHD", "SSC", "dev")
