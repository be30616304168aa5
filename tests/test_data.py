import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import require_data
from zoo.data.catalog import catalog, locate, unpack
from zoo.data.classification import ImageClassificationDataModule
from zoo.data.images import idx_folder, image_folder, open_split
from zoo.errors import ZooError


def test_catalogue_entries_are_complete():
    for name, e in catalog().items():
        assert {"title", "files", "license", "citation"} <= set(e), name
        assert all(len(f["sha256"]) == 64 for f in e["files"]), name


def test_missing_dataset_names_the_file_and_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    with pytest.raises(ZooError, match="cifar10-jpeg.tar.gz.*ZOO_DATA_DIR"):
        locate("cifar10_jpeg")


def test_corrupt_dataset_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    (tmp_path / "groove-midi.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ZooError, match="corrupt or a different version"):
        locate("groove_midi")


def test_unpack_is_atomic_and_once(tmp_path):
    import tarfile

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.txt").write_text("1")
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(src / "a", arcname="a")
    dest = unpack(archive, tmp_path / "out")
    assert (dest / "a" / "x.txt").read_text() == "1"
    archive.unlink()  # a second call must not need the archive
    assert unpack(archive, tmp_path / "out") == dest
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_unreadable_archive_is_one_error_and_leaves_nothing(tmp_path):
    bad = tmp_path / "images.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(ZooError, match="images.tar.gz could not be unpacked .*not a readable"):
        open_split(bad)
    with pytest.raises(ZooError, match="could not be unpacked"):
        unpack(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*.partial"))


def _write_idx(path, arr: np.ndarray):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_reader(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    ds = idx_folder(tmp_path, "test")
    im, y = ds[3]
    assert np.array_equal(np.asarray(im), x[3]) and y == 3
    with pytest.raises(ZooError, match="no IDX files for split 'train'"):
        idx_folder(tmp_path, "train")


def test_real_fashion_mnist():
    folder = require_data("fashion_mnist")
    train, test = open_split(folder, "train"), open_split("fashion_mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert test[0][0].size == (28, 28) and len(test.classes) == 10


def test_real_cifar10_jpeg_layout():
    require_data("cifar10_jpeg")
    train, test = open_split("cifar10_jpeg", "train"), open_split("cifar10_jpeg", "test")
    assert (len(train), len(test)) == (50000, 10000)
    assert train.classes[:3] == ["airplane", "automobile", "bird"]


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="no images found"):
        image_folder(tmp_path / "empty", labelled=False)
    (tmp_path / "bad" / "c").mkdir(parents=True)
    (tmp_path / "bad" / "c" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = image_folder(tmp_path / "bad")
    with pytest.raises(ZooError, match="broken.jpg"):
        ds[0]


def test_datamodule_splits_are_seeded_and_use_the_model_spec(shapes_data):
    spec = {"input_size": [3, 24, 24], "mean": [0.5] * 3, "std": [0.5] * 3}
    dm = ImageClassificationDataModule(str(shapes_data), batch_size=8, num_workers=0, val_fraction=0.25,
                                       input_spec=spec)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (300, 100, 100)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 24, 24) and y.dtype == torch.int64
    dm2 = ImageClassificationDataModule(str(shapes_data), batch_size=8, num_workers=0, val_fraction=0.25,
                                        input_spec=spec)
    dm2.setup()
    assert np.array_equal(dm.val_set.indices, dm2.val_set.indices)
    train_idx, val_idx = set(dm.train_set.indices.tolist()), set(dm.val_set.indices.tolist())
    assert dm.train_set.base is dm.val_set.base  # both from the training split...
    assert not train_idx & val_idx and train_idx | val_idx == set(range(400))  # ...without overlap, all used
    dm3 = ImageClassificationDataModule(str(shapes_data), num_workers=0, augment="contrastive", input_spec=spec)
    dm3.setup()
    assert dm3.train_set[0][0].shape == (2, 3, 24, 24)


def test_grey_images_become_rgb_for_rgb_models(tmp_path):
    (tmp_path / "g").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "g" / "a.png")
    from zoo.data.transforms import eval_transform

    spec = {"input_size": [3, 32, 32], "mean": [0.0] * 3, "std": [1.0] * 3}
    x = eval_transform(spec)(image_folder(tmp_path, labelled=False)[0][0])
    assert x.shape == (3, 32, 32)
