"""Data sources in their real on-disk formats (tiny archives written here), fitting, augmentation."""

import os
import pickle

import numpy as np
import pytest
import torch

from netdsl.cli import main
from netdsl.train import data as data_module
from netdsl.train.augment import Augment, epoch_batches, generator, shard
from netdsl.train.data import DataError, fit_images, load_data, open_source, prepare_data, split_validation


def _cifar_batch(path, n, label_key, seed, protocol=2):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    # The layout and bytes keys of the published archives (pickled by Python 2's cPickle).
    obj = {b"batch_label": b"batch", b"data": data, label_key: labels, b"filenames": [b"x.png"] * n}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return data, labels


def test_cifar10_reads_the_python_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    written = [_cifar_batch(root / f"data_batch_{i}", 2, b"labels", i) for i in range(1, 6)]
    test_data, test_labels = _cifar_batch(root / "test_batch", 3, b"labels", 9)
    s = load_data(f"cifar10:{tmp_path}")  # the parent folder is accepted too
    assert (s.classes, len(s.train), len(s.test)) == (10, 10, 3)
    # Row-major R, G, B planes of 32x32: pixel (c, y, x) is data[c*1024 + y*32 + x].
    assert s.train.images[3, 2, 5, 7].item() == written[1][0][1, 2 * 1024 + 5 * 32 + 7]
    assert s.train.labels.tolist() == [label for w in written for label in w[1]]
    assert torch.equal(s.test.images.reshape(3, -1), torch.from_numpy(test_data))
    assert s.test.labels.tolist() == test_labels


def test_cifar100_uses_fine_labels(tmp_path):
    _, train_labels = _cifar_batch(tmp_path / "train", 4, b"fine_labels", 1)
    _cifar_batch(tmp_path / "test", 2, b"fine_labels", 2)
    s = load_data(f"cifar100:{tmp_path}")
    assert (s.classes, s.train.labels.tolist()) == (100, train_labels)


def test_svhn_reads_the_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [9], [10]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": x[..., :2], "y": np.array([[3], [10]], dtype=np.uint8)})
    s = load_data(f"svhn:{tmp_path}")
    assert s.train.labels.tolist() == [0, 1, 9, 0]  # SVHN's label 10 is the digit 0
    assert s.test.labels.tolist() == [3, 0]
    assert s.train.images[2, 1, 4, 6].item() == x[4, 6, 1, 2]  # X is [H, W, C, N]


def test_imagefolder_resizes_to_the_network(tmp_path):
    from PIL import Image

    for split, n in (("train", 2), ("test", 1)):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 10), colour).save(tmp_path / split / c / f"{i}.png")
    s = load_data(f"imagefolder:{tmp_path}", size=(8, 8))
    assert (s.classes, tuple(s.train.images.shape), s.train.labels.tolist()) == (2, (4, 3, 8, 8), [0, 0, 1, 1])
    assert s.test.images[1, :, 3, 3].tolist() == [0, 0, 255]  # a dog is blue


def test_imagefolder_knows_its_classes_before_reading_an_image(tmp_path, monkeypatch):
    """A run learns the class count, compiles once, and only then reads images at the input size."""
    from PIL import Image

    for c in ("a", "b", "c"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (6, 4), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
    reads = []
    real = data_module._read_images
    monkeypatch.setattr(data_module, "_read_images", lambda files, size: reads.append(size) or real(files, size))
    src = open_source(f"imagefolder:{tmp_path}")
    assert (src.classes, reads) == (3, [])
    s = src.load((5, 7))
    assert reads == [(5, 7)] and tuple(s.train.images.shape[1:]) == (3, 5, 7)
    assert (len(s.train), len(s.test)) == (12, 3)  # a fixed fifth is the test split
    with pytest.raises(DataError, match="needs the network's input size"):
        src.load(None)


def test_prepare_data_fits_splits_limits_and_keeps_given_statistics():
    src = open_source("digits")
    d = prepare_data(src, (1, 8, 8), fit="resize", val_split=0.1, seed=3, limit=100)
    assert (len(d.train), len(d.val), len(d.test)) == (100, 144, 359) and d.note is None
    train, val = split_validation(load_data("digits").train, 0.1, seed=3)
    assert torch.equal(d.train.images, train.images[:100]) and torch.equal(d.val.labels, val.labels)
    from netdsl.train.data import channel_stats

    assert (d.mean, d.std) == channel_stats(train.images[:100])
    assert d.info == {
        "source": "digits",
        "mean": d.mean,
        "std": d.std,
        "classes": 10,
        "input": [1, 8, 8],
        "fit": "resize",
        "limit_train": 100,
        "sizes": [100, 144, 359],
    }
    wide = prepare_data(src, (3, 16, 16), fit="resize", val_split=0, seed=0, stats=([0.5] * 3, [0.25] * 3))
    assert wide.val is None and (wide.mean, wide.std) == ([0.5] * 3, [0.25] * 3)
    assert tuple(wide.train.images.shape[1:]) == (3, 16, 16)
    assert wide.note == (
        "note: digits images are 1x8x8; resized to the spec's input 3x16x16 (bilinear, grey repeated to 3 channels)"
    )
    with pytest.raises(DataError, match="error: digits: the data's images are 1x8x8"):
        prepare_data(src, (3, 16, 16), fit="refuse", val_split=0, seed=0)


@pytest.mark.parametrize(
    "source, named",
    [
        ("cifar10:{d}", "data_batch_1"),
        ("cifar100:{d}", "train"),
        ("svhn:{d}", "train_32x32.mat"),
        ("cifar10:{d}/absent", "absent"),
    ],
)
def test_a_missing_file_is_named(tmp_path, source, named):
    with pytest.raises(DataError) as e:
        load_data(source.format(d=tmp_path))
    assert named in e.value.message


def test_malformed_files_are_named(tmp_path):
    _cifar_batch(tmp_path / "data_batch_1", 2, b"labels", 0)
    data = (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR python batch"):
        load_data(f"cifar10:{tmp_path}")
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(DataError, match=r"train_32x32\.mat: not a readable \.mat file"):
        load_data(f"svhn:{tmp_path / 'svhn'}")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with open(tmp_path / "test", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    _cifar_batch(tmp_path / "train", 2, b"fine_labels", 0)
    with pytest.raises(DataError, match="refusing to load"):
        load_data(f"cifar100:{tmp_path}")


def test_cli_names_the_missing_file_and_exits_2(tmp_path, capsys):
    code = main(
        [
            "train",
            "densenet_bc100_k12",
            "--set",
            "depth=10",
            "--data",
            f"svhn:{tmp_path}",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "train_32x32.mat: missing file" in err and "Traceback" not in err


def test_unknown_source_has_a_hint():
    with pytest.raises(DataError) as e:
        load_data("mnist")
    assert "digits" in e.value.hint


def test_digits_split_is_fixed_and_labels_are_sklearns():
    from sklearn.datasets import load_digits

    s = load_data("digits")
    ref = load_digits()
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    assert (len(s.train), len(s.test)) == (1438, 359)
    assert s.test.labels.tolist() == ref.target[order[:359].numpy()].tolist()
    assert s.train.images[0, 0].tolist() == np.rint(ref.images[order[359].item()] * 255 / 16).astype(int).tolist()


def test_fit_resizes_deliberately_or_refuses():
    grey = torch.full((2, 1, 8, 8), 7, dtype=torch.uint8)
    fitted = fit_images(grey, (3, 32, 32))
    assert fitted.shape == (2, 3, 32, 32) and bool((fitted == 7).all())  # a constant stays constant
    ramp = torch.tensor([[[[0, 100]]]], dtype=torch.uint8)
    # Bilinear 1x2 -> 1x4 with half-pixel centres: 0, 25, 75, 100.
    assert fit_images(ramp, (1, 1, 4))[0, 0, 0].tolist() == [0, 25, 75, 100]
    with pytest.raises(DataError, match="1x8x8 but the network's input is 3x32x32"):
        fit_images(grey, (3, 32, 32), "refuse")
    with pytest.raises(DataError, match="only a 1-channel image can be widened"):
        fit_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (1, 8, 8))


def test_validation_split_is_disjoint_and_seeded():
    s = load_data("digits")
    train, val = split_validation(s.train, 0.1, seed=3)
    assert (len(train), len(val)) == (1294, 144)
    again, _ = split_validation(s.train, 0.1, seed=3)
    assert torch.equal(train.images, again.images)


def test_augmentation_geometry():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    a = Augment(mirror=True, shift=2)
    same = {"flip": torch.tensor([False, True]), "dy": torch.tensor([2, 2]), "dx": torch.tensor([2, 2])}
    out = a.apply(x, same)  # an offset equal to the padding is no shift
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[1].flip(2))
    moved = a.apply(x, {"flip": torch.tensor([False, False]), "dy": torch.tensor([0, 4]), "dx": torch.tensor([1, 2])})
    assert torch.equal(moved[0, 0, 2:, 1:], x[0, 0, :4, :5]) and bool((moved[0, 0, :2] == 0).all())
    assert torch.equal(moved[1, 0, :4], x[1, 0, 2:]) and bool((moved[1, 0, 4:] == 0).all())
    cut = Augment(mirror=False, shift=0, cutout_holes=1, cutout_size=4)
    holed = cut.apply(torch.ones(1, 2, 6, 6), {"cy0": torch.tensor([3]), "cx0": torch.tensor([0])})
    assert holed[0, 0].tolist() == [[1] * 6] + [[0, 0, 1, 1, 1, 1]] * 4 + [[1] * 6]


def test_batches_and_shards_are_functions_of_seed_epoch_step():
    a = epoch_batches(10, 4, seed=1, epoch=2)
    assert [len(b) for b in a] == [4, 4] and len(set(torch.cat(a).tolist())) == 8
    assert all(torch.equal(x, y) for x, y in zip(a, epoch_batches(10, 4, seed=1, epoch=2), strict=True))
    assert not torch.equal(a[0], epoch_batches(10, 4, seed=1, epoch=3)[0])
    assert [shard(torch.arange(5), r, 2) for r in (0, 1)] == [slice(0, 3), slice(3, 5)]
    d1, d2 = (Augment().draw(4, 8, 8, generator(0, 1, 2)) for _ in range(2))
    assert all(torch.equal(d1[k], d2[k]) for k in d1)
