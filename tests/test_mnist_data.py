"""MNIST data: reading the official IDX files (plain and gzipped), errors for missing and malformed
files, the opt-in download, the MNIST pixel encoding and the sequential-MNIST crossing encoding.

``write_mnist`` and ``synthetic_digits`` (small files in the official format) are used by the
simulator tests too."""
import gzip
import os
import struct

import mnist
import numpy as np
import pytest

from eventprop.data import mnist as mnist_data
from eventprop.data.mnist import (ImageSpikes, MNISTEncoder, SMNISTEncoder, load_split, read_idx,
                        smnist_events, smnist_sequences)
from eventprop.data.spikes import SpikeData, times_to_steps

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

# top-left corners of the 11 x 11 block that each class lights
CORNERS = [(r, c) for r in (0, 8, 16) for c in (0, 5, 11, 16)][:10]


def idx_bytes(array, magic):
    """An IDX file: big-endian magic number, one big-endian size per dimension, the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    return (struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
            + array.tobytes())


def write_file(path, content, gz=False):
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(content)
    else:
        with open(path, "wb") as f:
            f.write(content)


def synthetic_digits(n, seed=0, n_classes=10):
    """Separable "digits": class c lights an 11 x 11 block at its own place (shifted by 0 or 1
    pixel) with grey values 100 + 15 c +- 10, plus 10 random pixels anywhere. About 130 bright
    pixels, as in MNIST."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, q = CORNERS[c]
        r, q = r + rng.integers(0, 2), q + rng.integers(0, 2)
        images[i, r:r + 11, q:q + 11] = np.clip(100 + 15 * c + rng.integers(-10, 11, (11, 11)),
                                                2, 255)
        images[i].flat[rng.integers(0, 784, 10)] = rng.integers(0, 256, 10)
    return images, labels.astype(np.uint8)


def write_mnist(data_dir, n_train=300, n_test=100, gz=False, seed=0, n_classes=10):
    """The four official files with synthetic digits in data_dir/MNIST; returns that folder."""
    folder = os.path.join(str(data_dir), "MNIST")
    os.makedirs(folder, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = synthetic_digits(n, s, n_classes)
        write_file(os.path.join(folder, NAMES[split][0]), idx_bytes(images, IMAGE_MAGIC), gz)
        write_file(os.path.join(folder, NAMES[split][1]), idx_bytes(labels, LABEL_MAGIC), gz)
    return folder


# --- reading ----------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_files_load_plain_and_gzipped(tmp_path, gz):
    folder = write_mnist(tmp_path, n_train=50, n_test=20, gz=gz)
    images, labels = load_split(folder, "train")
    expected_images, expected_labels = synthetic_digits(50, 0)
    assert images.dtype == np.uint8 and images.shape == (50, 28, 28)
    assert np.array_equal(images, expected_images)
    assert labels.dtype == np.int64 and np.array_equal(labels, expected_labels)
    test_images, test_labels = load_split(folder, "test")
    assert test_images.shape == (20, 28, 28) and np.array_equal(
        test_labels, synthetic_digits(20, 1)[1])


def test_plain_and_gzipped_files_can_be_mixed(tmp_path):
    folder = tmp_path / "MNIST"
    folder.mkdir()
    images, labels = synthetic_digits(12)
    write_file(folder / NAMES["train"][0], idx_bytes(images, IMAGE_MAGIC), gz=True)
    write_file(folder / NAMES["train"][1], idx_bytes(labels, LABEL_MAGIC), gz=False)
    got_images, got_labels = load_split(str(folder), "train")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_missing_file_names_the_path_and_the_source(tmp_path):
    folder = write_mnist(tmp_path, n_train=10, n_test=10)
    os.remove(os.path.join(folder, NAMES["test"][1]))
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte.*yann\.lecun\.com"):
        load_split(folder, "test")
    with pytest.raises(FileNotFoundError, match="DOWNLOAD"):
        load_split(str(tmp_path / "nowhere"), "train")


def malformed(folder, kind, content, gz=False):
    """Replace the training images ("images") or labels ("labels") by ``content``."""
    index = 0 if kind == "images" else 1
    path = os.path.join(folder, NAMES["train"][index])
    for old in (path, path + ".gz"):
        if os.path.exists(old):
            os.remove(old)
    write_file(path, content, gz)
    return NAMES["train"][index]


@pytest.mark.parametrize("case", ["bad magic", "labels magic", "truncated", "too long",
                                  "wrong shape", "empty", "not gzip", "bad label"])
def test_malformed_files_are_errors_naming_the_file(tmp_path, case):
    folder = write_mnist(tmp_path, n_train=20, n_test=10)
    images, labels = synthetic_digits(20)
    content = {
        "bad magic": ("images", struct.pack(">I", 0x00000903) + idx_bytes(images, 0)[4:]),
        "labels magic": ("images", idx_bytes(images, LABEL_MAGIC)),
        "truncated": ("images", idx_bytes(images, IMAGE_MAGIC)[:-100]),
        "too long": ("labels", idx_bytes(labels, LABEL_MAGIC) + b"\x01"),
        "wrong shape": ("images", idx_bytes(images[:, :20, :20], IMAGE_MAGIC)),
        "empty": ("labels", b""),
        "not gzip": ("images", None),
        "bad label": ("labels", idx_bytes(labels + 5, LABEL_MAGIC)),
    }[case]
    kind, data = content
    if case == "not gzip":
        name = NAMES["train"][0]
        os.remove(os.path.join(folder, name))
        with open(os.path.join(folder, name + ".gz"), "wb") as f:
            f.write(idx_bytes(images, IMAGE_MAGIC))           # plain bytes under a .gz name
    else:
        name = malformed(folder, kind, data)
    with pytest.raises(ValueError, match=name.replace("-", r"\-")):
        load_split(folder, "train")


def test_image_and_label_counts_must_agree(tmp_path):
    folder = write_mnist(tmp_path, n_train=20, n_test=10)
    malformed(folder, "labels", idx_bytes(synthetic_digits(19)[1], LABEL_MAGIC), gz=True)
    with pytest.raises(ValueError, match=r"20 images.*train-labels-idx1-ubyte\.gz.*19 labels"):
        load_split(folder, "train")


def test_read_idx_reports_the_header_it_found(tmp_path):
    path = tmp_path / "x"
    write_file(path, idx_bytes(np.zeros((2, 28, 28)), IMAGE_MAGIC))
    with pytest.raises(ValueError, match=r"0x00000803, expected 0x00000801"):
        read_idx(path, "labels")


# --- download ---------------------------------------------------------------------------------

def fake_download(source_folder, calls):
    """A stand-in for mnist.download_file that copies the gzipped file from source_folder."""
    def download_file(fname, target_dir=None, force=False):
        calls.append((fname, target_dir))
        with open(os.path.join(source_folder, fname), "rb") as f:
            content = f.read()
        path = os.path.join(target_dir, fname)
        with open(path, "wb") as f:
            f.write(content)
        return path
    return download_file


def test_download_is_opt_in(tmp_path, monkeypatch):
    source = write_mnist(tmp_path / "server", n_train=30, n_test=10, gz=True)
    calls = []
    monkeypatch.setattr(mnist, "download_file", fake_download(source, calls))
    folder = str(tmp_path / "data" / "MNIST")
    with pytest.raises(FileNotFoundError):
        load_split(folder, "train")
    assert calls == []                                   # nothing fetched unless asked
    images, labels = load_split(folder, "train", download=True)
    assert [c[0] for c in calls] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert np.array_equal(images, synthetic_digits(30)[0])
    assert sorted(os.listdir(folder)) == ["train-images-idx3-ubyte.gz",
                                          "train-labels-idx1-ubyte.gz"]   # no temporary left
    load_split(folder, "train", download=True)
    assert len(calls) == 2                               # present files are not fetched again


def test_failed_download_names_the_file_and_the_source(tmp_path, monkeypatch):
    def offline(fname, target_dir=None, force=False):
        raise OSError("network unreachable")
    monkeypatch.setattr(mnist, "download_file", offline)
    folder = str(tmp_path / "MNIST")
    with pytest.raises(RuntimeError, match=r"t10k-images-idx3-ubyte\.gz.*yann\.lecun\.com"):
        load_split(folder, "test", download=True)
    assert os.listdir(folder) == []


# --- MNIST encoding ---------------------------------------------------------------------------

@pytest.mark.parametrize("dt,T", [(1.0, 20.0), (0.1, 20.0), (0.5, 7.0)])
def test_mnist_pixels_fire_once_at_the_formula_time(dt, T):
    """Pixel i of grey value g > 1 fires once, at the first step at or after
    t = 2 dt + (255 - g) / 255 (T - 4 dt); g <= 1 is silent."""
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0].flat[:256] = np.arange(256)                  # every grey value once
    images[1].flat[::7] = 255
    images[1].flat[3::7] = 1
    encoder = MNISTEncoder(dt, T)
    data = encoder(images, [4, 7])
    assert data.n_channels == 784 and data.n_steps == int(round(T / dt))
    for b in range(2):
        steps, channels = data.sample(b)
        g = images[b].ravel()
        assert sorted(channels.tolist()) == np.flatnonzero(g > 1).tolist()
        t = 2 * dt + (255.0 - g[channels]) / 255.0 * (T - 4 * dt)
        assert np.array_equal(steps, times_to_steps(t, dt))
        assert steps.min() >= int(round(2)) and steps.max() <= data.n_steps - 2
    assert np.array_equal(data.labels, [4, 7])
    assert data.sample(0)[0][data.sample(0)[1] == 255][0] == 2       # brightest: at 2 dt


def test_step_table_and_spike_times():
    t = mnist_data.pixel_spike_times([0, 1, 2, 255], 1.0, 20.0)
    assert np.isnan(t[0]) and np.isnan(t[1])
    assert t[2] == pytest.approx(2 + 253 / 255 * 16) and t[3] == 2.0
    table = mnist_data.mnist_step_table(1.0, 20.0)
    assert table[0] == table[1] == -1 and table[255] == 2 and table[2] == 18


def test_image_spikes_batch_and_subset():
    images, labels = synthetic_digits(40, seed=3)
    data = ImageSpikes(images, labels, MNISTEncoder(1.0, 20.0))
    whole = data.spikes()
    assert isinstance(whole, SpikeData) and len(whole) == 40 == len(data)
    idx = np.array([5, 2, 30])
    in_ptr, in_ch = data.batch(idx)
    ref_ptr, ref_ch = whole.batch(idx)
    assert np.array_equal(in_ptr, ref_ptr) and np.array_equal(in_ch, ref_ch)
    dropped = data.batch(idx, p_drop=0.5, rng=np.random.default_rng(1))
    ref = whole.batch(idx, p_drop=0.5, rng=np.random.default_rng(1))
    assert np.array_equal(dropped[1], ref[1]) and len(ref[1]) < len(in_ch)
    sub = data.subset(idx)
    assert np.array_equal(sub.labels, labels[idx]) and np.array_equal(sub.images, images[idx])


# --- sequential MNIST encoding ----------------------------------------------------------------

def events_of(sequence):
    """[(slot, neuron), ...] of one hand-made sequence."""
    ev = smnist_events(np.asarray(sequence, dtype=np.uint8)[None, :, None])
    _, slot, _, neuron = np.nonzero(ev)
    return list(zip(slot.tolist(), neuron.tolist()))


UP, DOWN, FULL = 0, 49, 98


def test_thresholds():
    assert len(mnist_data.THRESHOLDS) == 49
    assert mnist_data.THRESHOLDS[0] == 0.0 and mnist_data.THRESHOLDS[-1] == 254.0
    assert np.allclose(np.diff(mnist_data.THRESHOLDS), 254 / 48)


@pytest.mark.parametrize("sequence,expected", [
    # a pixel turning fully on and off: every up neuron and the 255 neuron, then every down one
    ([0, 255, 255, 0], [(1, UP + k) for k in range(49)] + [(1, FULL), (2, FULL)]
     + [(3, DOWN + k) for k in range(49)]),
    # theta_1 = 5.29, theta_2 = 10.58: 0 -> 10 crosses theta_0 = 0 and theta_1
    ([0, 10, 5, 5, 6], [(1, UP + 0), (1, UP + 1), (2, DOWN + 1), (4, UP + 1)]),
    # the value before the first slot is 0: a bright first pixel fires at slot 0
    ([100], [(0, UP + k) for k in range(19)]),        # theta_18 = 95.25 < 100 <= theta_19
    ([0, 0, 0], []),
    # 254 and 255: theta_48 = 254 is crossed upwards by 254 -> 255 only
    ([254, 255, 254], [(0, UP + k) for k in range(48)] + [(1, UP + 48), (1, FULL),
                                                         (2, DOWN + 48)]),
    # a value on a threshold is below it: 0 -> theta-valued 127 (= theta_24) crosses theta_0..23
    ([127, 128], [(0, UP + k) for k in range(24)] + [(1, UP + 24)]),
])
def test_crossings_of_hand_made_sequences(sequence, expected):
    assert events_of(sequence) == sorted(expected)


def test_compiled_encoder_matches_the_definition_in_both_modes():
    images, labels = synthetic_digits(12, seed=5)
    images[0] = np.random.default_rng(0).integers(0, 256, (28, 28))     # every kind of step
    for mode, n_seq, n_slots in (("pixel", 1, 784), ("row", 28, 28)):
        encoder = SMNISTEncoder(mode, 2.0, 0.5, 2.0 * n_slots + 3)
        data = encoder(images, labels)
        assert data.n_channels == n_seq * 99
        ev = smnist_events(smnist_sequences(images, mode))
        assert ev.shape == (12, n_slots, n_seq, 99)
        sample, slot, seq, neuron = np.nonzero(ev)
        ref = SpikeData.from_flat(sample, times_to_steps(slot * 2.0, 0.5), seq * 99 + neuron,
                                  labels, data.n_steps, data.n_channels)
        assert np.array_equal(data.offsets, ref.offsets)
        assert np.array_equal(data.steps, ref.steps)
        assert np.array_equal(data.channels, ref.channels)


def test_row_mode_sequences_are_columns():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 3, 7] = 255                                # row 3, column 7
    seq = smnist_sequences(image, "row")
    assert seq.shape == (1, 28, 28) and seq[0, 3, 7] == 255
    data = SMNISTEncoder("row", 1.0, 1.0, 30.0)(image, [0])
    steps, channels = data.sample(0)
    assert set(zip(steps.tolist(), channels.tolist())) == (
        {(3, 7 * 99 + k) for k in range(49)} | {(3, 7 * 99 + FULL)}
        | {(4, 7 * 99 + DOWN + k) for k in range(49)})
    pixel = SMNISTEncoder("pixel", 1.0, 1.0, 784.0)(image, [0])
    steps, channels = pixel.sample(0)
    assert set(steps.tolist()) == {3 * 28 + 7, 3 * 28 + 8} and channels.max() == FULL


def test_smnist_encoder_rejects_slots_that_do_not_fit():
    with pytest.raises(ValueError, match="slots"):
        SMNISTEncoder("pixel", 1.0, 1.0, 700.0)
    with pytest.raises(ValueError, match="mode"):
        SMNISTEncoder("column", 1.0, 1.0, 700.0)
