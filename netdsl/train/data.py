"""Image classification data held in memory as uint8 tensors, and how it is fitted to a spec.

A data argument names a source: ``digits`` (scikit-learn's bundled 8x8 handwritten digits,
no download), ``cifar10:PATH`` / ``cifar100:PATH`` (the extracted python-pickle archives),
``svhn:PATH`` (``train_32x32.mat`` / ``test_32x32.mat``) or ``imagefolder:PATH``
(``PATH/train/CLASS/*.png`` and ``PATH/test/CLASS/*`` -- or ``val`` -- or just ``PATH/CLASS/*``,
of which a fixed 20% becomes the test split). Every loader returns a :class:`Splits`.

>>> s = load_data("digits")
>>> tuple(s.train.images.shape), tuple(s.test.images.shape), s.classes
((1438, 1, 8, 8), (359, 1, 8, 8), 10)
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NetdslError
from .names import SOURCES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(NetdslError):
    """A data source that is missing, malformed or does not fit the network."""


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])

    @property
    def shape(self) -> tuple[int, int, int]:
        return cast("tuple[int, int, int]", tuple(self.images.shape[1:]))


@dataclass
class Splits:
    name: str
    train: ImageSet
    test: ImageSet
    classes: int


@dataclass
class Source:
    """A data source opened far enough to know its class count; :meth:`load` gives the images.

    Only ``imagefolder`` needs the network's input size to read its files (they differ in size),
    so a run can learn the class count, compile its spec once, and then load."""

    name: str
    classes: int
    _load: Callable[[tuple[int, int] | None], Splits]

    def load(self, size: tuple[int, int] | None = None) -> Splits:
        return self._load(size)


def open_source(source: str) -> Source:
    """Open a data source (see the module docstring for the names)."""
    kind, _, path = source.partition(":")
    loaders: dict[str, Callable[..., Splits]] = {
        "digits": _digits,
        "cifar10": _cifar10,
        "cifar100": _cifar100,
        "svhn": _svhn,
    }
    if kind not in loaders and kind != "imagefolder":
        raise DataError(f"unknown data source {source!r}", None, "use one of " + ", ".join(SOURCES))
    if kind == "digits":
        if path:
            raise DataError("'digits' is bundled with scikit-learn and takes no path", None, "use --data digits")
        splits = _digits()
        return Source(source, splits.classes, lambda size: splits)
    if not path:
        raise DataError(f"data source {kind!r} needs a path", None, f"for example --data {kind}:data/{kind}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder (data source {kind})")
    if kind == "imagefolder":
        return _imagefolder(root, source)
    splits = loaders[kind](root)
    return Source(source, splits.classes, lambda size: splits)


def load_data(source: str, size: tuple[int, int] | None = None) -> Splits:
    """Load a data source; ``size`` (H, W) is only used by ``imagefolder``, whose files differ in size."""
    return open_source(source).load(size)


# --- the sources -----------------------------------------------------------------------------


def _digits() -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    # The 0..16 ink levels scaled to 0..255 so every source is uint8.
    images = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    # digits has no official split: a fixed one (seed 0, independent of --seed), 20% test.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = len(labels) // 5
    full = ImageSet(images, labels)
    return Splits("digits", full.subset(order[n_test:]), full.subset(order[:n_test]), 10)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch cannot run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing file", None, "expected the extracted python version of the archive")
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unreadable byte stream: truncated, not a pickle, foreign classes
        raise DataError(f"{path}: not a CIFAR python batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str) -> ImageSet:
    d = _unpickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: not a CIFAR python batch (keys {sorted(d)}; need 'data' and '{label_key}')")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"{path}: malformed CIFAR batch: data {data.dtype}{list(data.shape)}, "
            f"{len(labels)} labels (need uint8 [N, 3072] and N labels)"
        )
    return ImageSet(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels))


def _concat(sets: list[ImageSet]) -> ImageSet:
    return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]))


def _cifar_root(root: Path, marker: str, inner: str) -> Path:
    if (root / marker).exists() or not (root / inner).is_dir():
        return root
    return root / inner


def _cifar10(root: Path) -> Splits:
    root = _cifar_root(root, "test_batch", "cifar-10-batches-py")
    train = _concat([_cifar_batch(root / f"data_batch_{i}", "labels") for i in range(1, 6)])
    return Splits("cifar10", train, _cifar_batch(root / "test_batch", "labels"), 10)


def _cifar100(root: Path) -> Splits:
    root = _cifar_root(root, "test", "cifar-100-python")
    train, test = (_cifar_batch(root / n, "fine_labels") for n in ("train", "test"))
    return Splits("cifar100", train, test, 100)


def _svhn_file(path: Path) -> ImageSet:
    if not path.is_file():
        raise DataError(f"{path}: missing file", None, "expected the cropped-digits .mat files of SVHN")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading SVHN .mat files needs scipy", None, "pip install scipy") from None
    try:
        m = loadmat(path)
    except Exception as e:  # scipy raises several types for a damaged file
        raise DataError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
    x, y = m.get("X"), m.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[2] != 3 or y.size != x.shape[3]:
        shapes = {k: list(v.shape) for k, v in m.items() if hasattr(v, "shape")}
        raise DataError(f"{path}: malformed SVHN file {shapes} (need X [32, 32, 3, N] and y [N, 1])")
    labels = y.reshape(-1).astype(np.int64) % 10  # SVHN stores the digit 0 as label 10
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    return ImageSet(images, torch.from_numpy(labels))


def _svhn(root: Path) -> Splits:
    return Splits("svhn", _svhn_file(root / "train_32x32.mat"), _svhn_file(root / "test_32x32.mat"), 10)


def _image_files(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((folder / name).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(c)
    if not files:
        raise DataError(f"{folder}: no images found", None, "expected CLASS/IMAGE files, e.g. cat/001.png")
    return files, labels, classes


def _read_images(files: list[Path], size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image

    out = np.empty((len(files), size[0], size[1], 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                out[i] = np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR))
        except Exception as e:  # PIL raises several types for a damaged image
            raise DataError(f"{f}: not a readable image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _imagefolder(root: Path, name: str) -> Source:
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        files, labels, classes = _image_files(root / "train")
        if test_dir is None:
            raise DataError(f"{root}: has train/ but no test/ or val/ folder")
        tfiles, tlabels, tclasses = _image_files(test_dir)
        if tclasses != classes:
            raise DataError(f"{test_dir}: classes {tclasses} differ from train/ {classes}")

        def load(size):
            train = ImageSet(_read_images(files, _need(size)), torch.tensor(labels))
            return Splits(
                "imagefolder", train, ImageSet(_read_images(tfiles, size), torch.tensor(tlabels)), len(classes)
            )

        return Source(name, len(classes), load)
    files, labels, classes = _image_files(root)

    def load_split(size):
        full = ImageSet(_read_images(files, _need(size)), torch.tensor(labels))
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
        n_test = len(full) // 5
        return Splits("imagefolder", full.subset(order[n_test:]), full.subset(order[:n_test]), len(classes))

    return Source(name, len(classes), load_split)


def _need(size: tuple[int, int] | None) -> tuple[int, int]:
    if size is None:
        raise DataError("imagefolder needs the network's input size to resize its images")
    return size


# --- fitting data to a network -----------------------------------------------------------------


def fit_images(images: torch.Tensor, shape: tuple[int, int, int], policy: str = "resize") -> torch.Tensor:
    """Make uint8 images ``(N, c, h, w)`` match a network input ``(C, H, W)``.

    ``resize``: a grey image is repeated to C channels and the map is resized bilinearly
    (antialiased when shrinking); ``refuse``: any difference is an error naming both shapes.

    >>> fit_images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), (3, 32, 32)).shape
    torch.Size([2, 3, 32, 32])
    """
    have = tuple(images.shape[1:])
    if have == tuple(shape):
        return images
    c, h, w = shape
    msg = f"the data's images are {'x'.join(map(str, have))} but the network's input is {c}x{h}x{w}"
    if policy == "refuse":
        raise DataError(msg, None, "use --fit resize to resize (and repeat grey to 3 channels) deliberately")
    if have[0] != c and have[0] != 1:
        raise DataError(
            msg + "; only a 1-channel image can be widened", None, "set the spec's input channels to match the data"
        )
    out = []
    for chunk in images.split(4096):  # bounded float memory for CIFAR-sized sets
        x = chunk.float()
        if have[1:] != (h, w):
            x = F.interpolate(
                x, size=(h, w), mode="bilinear", align_corners=False, antialias=h < have[1] or w < have[2]
            )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8).expand(-1, c, -1, -1))
    return torch.cat(out).contiguous()


def split_validation(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """Hold out ``fraction`` of the training images (a seeded permutation) for validation."""
    if fraction <= 0:
        return train, None
    if not fraction < 1:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(train) * fraction))
    return train.subset(order[n_val:]), train.subset(order[:n_val])


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0..1 scale."""
    x = images.double().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-3)
    return x.mean(dim=1).tolist(), std.tolist()


# --- the data of one run -------------------------------------------------------------------------


@dataclass
class RunData:
    """A run's splits fitted to the network, with the normalization statistics of its training split."""

    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    info: dict  # what a checkpoint keeps under "data": how to rebuild and normalize these splits
    note: str | None = None  # a resize the user should know about

    @property
    def mean(self) -> list[float]:
        return self.info["mean"]

    @property
    def std(self) -> list[float]:
        return self.info["std"]


def prepare_data(
    source: Source,
    shape: tuple[int, int, int],
    *,
    fit: str,
    val_split: float,
    seed: int,
    limit: int | None = None,
    stats: tuple[list[float], list[float]] | None = None,
) -> RunData:
    """Load ``source`` at the network's input ``shape``, fit it, hold out validation, take the first
    ``limit`` training images; ``stats`` (mean, std) are a resumed run's, else the training split's."""
    splits = source.load((shape[1], shape[2]))
    note = None
    if shape != splits.train.shape and fit == "resize":
        note = (
            f"note: {source.name} images are {'x'.join(map(str, splits.train.shape))}; resized to the spec's "
            f"input {'x'.join(map(str, shape))} (bilinear"
            + (", grey repeated to 3 channels)" if splits.train.shape[0] == 1 < shape[0] else ")")
        )
    train = ImageSet(_fit(splits.train.images, shape, fit, source.name), splits.train.labels)
    test = ImageSet(_fit(splits.test.images, shape, fit, source.name), splits.test.labels)
    train, val = split_validation(train, val_split, seed)
    if limit:
        train = train.subset(slice(0, limit))
    mean, std = stats if stats is not None else channel_stats(train.images)
    info = {
        "source": source.name,
        "mean": mean,
        "std": std,
        "classes": splits.classes,
        "input": list(shape),
        "fit": fit,
        "limit_train": limit,
        "sizes": [len(train), len(val or []), len(test)],
    }
    return RunData(train, val, test, info, note)


def _fit(images: torch.Tensor, shape, policy: str, source: str) -> torch.Tensor:
    try:
        return fit_images(images, shape, policy)
    except DataError as e:
        e.message = f"{source}: {e.message}"
        raise
