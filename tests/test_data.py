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
    grey = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g" / "a.png")
    from zoo.data.transforms import eval_transform

    spec = {"input_size": [3, 32, 32], "mean": [0.0] * 3, "std": [1.0] * 3, "crop_pct": 1.0}
    x = eval_transform(spec)(image_folder(tmp_path, labelled=False)[0][0])
    assert x.shape == (3, 32, 32)
    assert all(torch.allclose(x[c], torch.from_numpy(grey) / 255.0) for c in range(3))  # the grey value in each channel


def test_eval_transform_keeps_the_aspect_ratio_of_a_wide_image_as_mae_and_timm():
    """A 500x375 image whose left 100 columns are red, at 224 px with crop_pct 0.875: the shorter side goes to 256
    (the image to 341x256) and the centre crop cuts 58 columns from each side, so 100 * 341 / 500 - 58 = 10 red
    columns remain; squashing to 256x256 would leave 100 * 256 / 500 - 16 = 35."""
    from zoo.data.transforms import eval_transform

    a = np.zeros((375, 500, 3), np.uint8)
    a[:, :100, 0] = 255
    spec = {"input_size": [3, 224, 224], "mean": [0.0] * 3, "std": [1.0] * 3, "crop_pct": 0.875,
            "interpolation": "bicubic"}
    x = eval_transform(spec)(Image.fromarray(a))
    assert x.shape == (3, 224, 224)
    red = int((x[0, 112] > 0.5).sum())
    assert red in (10, 11), red
    # a non-square input: each side to size / crop_pct (256 x 128), the 100 red columns to 25.6, 8 cropped away
    tall = eval_transform({**spec, "input_size": [3, 224, 112]})(Image.fromarray(a))
    assert tall.shape == (3, 224, 112) and int((tall[0, 112] > 0.5).sum()) in (17, 18)
    with pytest.raises(ZooError, match="crop_mode 'border' is not supported"):
        eval_transform({**spec, "crop_mode": "border"})
    squashed = eval_transform({**spec, "crop_mode": "squash"})(Image.fromarray(a))  # the kNN-OOD CIFAR models'
    assert int((squashed[0, 112] > 0.5).sum()) in (35, 36)


def test_knn_ood_cifar_models_squash_a_wide_image_as_the_authors_cifar_test_transform():
    """The authors' ``Resize((32, 32))`` + ``CenterCrop(32)`` on a 64x32 image whose left 16 columns are red:
    squashed, 8 red columns remain (a shorter-side resize and crop would leave none)."""
    import zoo
    from zoo.data.transforms import eval_transform

    a = np.zeros((32, 64, 3), np.uint8)
    a[:, :16, 0] = 255
    m = zoo.create_model("knn_ood_resnet20")
    x = eval_transform(m.input_spec)(Image.fromarray(a))
    assert x.shape == (3, 32, 32) and int((x[0, 16] > x[0, 16].min() + 1).sum()) == 8


def _tree(root, counts: dict, size: int = 8):
    """Tiny PNGs: ``counts`` maps a folder (relative to ``root``) to how many images it gets; returns ``root``."""
    rng = np.random.default_rng(0)
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


def test_train_test_sources_need_both_splits_and_descend_into_a_lone_top_folder(tmp_path):
    """The OOD task's ID data and the DataModule need separate splits (a folder without them used to give the same
    images as train and test); a folder or archive holding one top folder is read from inside it (it used to be one
    class named after that folder)."""
    import tarfile

    from zoo.data.images import open_train_test

    flat = _tree(tmp_path / "flat", {"cat": 2, "dog": 2})
    with pytest.raises(ZooError, match=r"flat needs separate train and test splits \(found neither\): give a folder "
                                       r"or .tar.gz holding train/<class>/ and test/<class>/"):
        open_train_test(flat)
    assert len(open_split(flat, "test")) == 4  # a classification eval still scores such a folder whole
    only_train = _tree(tmp_path / "only_train", {"train/cat": 1})
    with pytest.raises(ZooError, match=r"\(found train/\)"):
        open_train_test(only_train)
    with pytest.raises(ZooError, match=r"only_train has no tset/ folder; its splits: train$"):  # a mistyped split
        open_split(only_train, "tset")
    _tree(tmp_path / "wrap" / "top", {"train/cat": 3, "train/dog": 3, "test/cat": 1, "test/dog": 2})
    archive = tmp_path / "toplevel.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tmp_path / "wrap" / "top", arcname="top")
    for source in (archive, tmp_path / "wrap"):
        train, test = open_train_test(source)
        assert (len(train), len(test), train.classes, test.classes) == (6, 3, ["cat", "dog"], ["cat", "dog"])
        assert open_split(source, "test").classes == ["cat", "dog"]
    one_class = _tree(tmp_path / "one_class", {"cat": 2})  # a lone folder of images is a class, not a wrapper
    assert open_split(one_class).classes == ["cat"]


def test_train_and_test_splits_must_name_the_same_classes(tmp_path):
    """With labels indexing the sorted folder names, train {cat, dog} and test {airplane, cat, dog} gave cat two
    different labels."""
    from zoo.data.images import open_train_test

    data = _tree(tmp_path / "d", {"train/cat": 2, "train/dog": 2, "test/airplane": 1, "test/cat": 1, "test/dog": 1})
    needle = r"the train and test splits must have the same classes .*only in train: none; only in test: airplane"
    with pytest.raises(ZooError, match=needle):
        open_train_test(data)
    dm = ImageClassificationDataModule(str(data), num_workers=0, input_spec={"input_size": [3, 8, 8],
                                                                             "mean": [0.5] * 3, "std": [0.5] * 3})
    with pytest.raises(ZooError, match=needle):
        dm.setup()


def _classifier(classes=None, num_classes=10):
    import zoo

    m = zoo.create_model("knn_ood_resnet20", num_classes=num_classes)
    if classes is not None:
        m.zoo_cfg["classes"] = classes
    return m


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_labels_follow_the_model_class_names_when_it_records_them(tmp_path):
    from zoo.data.labels import to_model_labels

    ds = open_split(_tree(tmp_path / "d", {"test/cat": 2, "test/dog": 1}), "test")
    assert to_model_labels(_classifier(CIFAR10), ds) == "model class names"
    assert [ds[i][1] for i in range(3)] == [3, 3, 5] and ds.classes == CIFAR10  # cat, dog: not 0 and 1
    odd = open_split(_tree(tmp_path / "e", {"cat": 1, "kangaroo": 1, "zebra": 1}))
    with pytest.raises(ZooError, match=r"e has classes knn_ood_resnet20 was not trained on: kangaroo, zebra \(its "
                                       r"classes: airplane, automobile, .*, truck\)"):
        to_model_labels(_classifier(CIFAR10), odd)
    same = open_split(_tree(tmp_path / "f", {"cat": 1, "dog": 1}))
    assert to_model_labels(_classifier(), same) == "sorted folder names" and same.labels == [0, 1]
    with pytest.raises(ZooError, match=r"f has 2 classes \(cat, dog\) but knn_ood_resnet20 has 1 outputs"):
        to_model_labels(_classifier(num_classes=1), same)


def test_idx_images_need_no_labels_nor_the_test_prefix(tmp_path):
    """An OOD set needs only images: a folder with just t10k-images (no labels), or one images file under another
    name, used to be refused."""
    from zoo.data.images import idx_images, is_idx_folder

    x = np.random.default_rng(0).integers(0, 255, (4, 28, 28))
    for name in ("t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "emnist-letters-images-idx3-ubyte.gz"):
        folder = tmp_path / name.split("-")[0]
        folder.mkdir()
        _write_idx(folder / name, x)
        ds = idx_images(folder)
        assert is_idx_folder(folder) and len(ds) == 4 and ds[2][1] == -1
        assert np.array_equal(np.asarray(ds[2][0]), x[2])
    _write_idx(tmp_path / "emnist" / "other-images-idx3-ubyte.gz", x)
    with pytest.raises(ZooError, match="holds 2 IDX image files .* keep only the one to use"):
        idx_images(tmp_path / "emnist")


def test_wide_images_are_scaled_to_eight_bits(tmp_path):
    """Pillow's convert clips 16-bit (I;16, I) pixels at 255: a 16-bit PNG used to load as an all-white image."""
    from zoo.data.images import load_image
    from zoo.data.transforms import ConvertMode

    grey = np.random.default_rng(0).integers(0, 256, (16, 16)).astype(np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    im = load_image(tmp_path / "sixteen.png")
    assert im.mode == "L" and np.array_equal(np.asarray(im), grey)
    assert np.array_equal(np.asarray(load_image(tmp_path / "sixteen.png").convert("RGB"))[..., 1], grey)
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "float.tif")
    assert np.array_equal(np.asarray(load_image(tmp_path / "float.tif")), grey)
    wide = Image.fromarray(grey.astype(np.int32) * 257)  # mode I, as Pillow gives 16-bit PGM files
    assert np.array_equal(np.asarray(ConvertMode(3)(wide))[..., 0], grey)
    Image.fromarray(grey.astype(np.int32) * 100000).save(tmp_path / "huge.tif")
    with pytest.raises(ZooError, match=r"huge.tif: its I pixels range from 0 to 2.5.e\+07, which has no 8-bit scale"):
        load_image(tmp_path / "huge.tif")


def test_an_image_over_pillows_size_limit_is_one_error_naming_it(tmp_path, monkeypatch):
    """A PNG whose header claims 30000x30000 pixels raised PIL's DecompressionBombError without the file's name."""
    import zlib

    from zoo.data.images import load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default (an imported library may lift it)

    Image.new("L", (1, 1)).save(tmp_path / "small.png")
    png = bytearray((tmp_path / "small.png").read_bytes())
    png[16:24] = struct.pack(">II", 30000, 30000)  # IHDR width, height
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(png))
    with pytest.raises(ZooError, match=r"cannot read image .*bomb.png: Image size \(900000000 pixels\) exceeds .* "
                                       r"if the image is genuine, downscale it or raise that limit "
                                       r"\(PIL.Image.MAX_IMAGE_PIXELS\)"):
        load_image(tmp_path / "bomb.png")


def test_symlinked_folders_are_followed_and_a_broken_link_is_named(tmp_path):
    """rglob skipped symbolic links to folders (5 of 25 images found) and broken .jpg links went unnoticed."""
    _tree(tmp_path / "real", {"cats": 4})
    ood = _tree(tmp_path / "ood", {"sub": 2})
    (ood / "catlink").symlink_to(tmp_path / "real" / "cats")
    (ood / "sub" / "loop").symlink_to(ood)  # a link back up must not recurse forever
    ds = image_folder(ood, labelled=False)
    assert len(ds) == 6 and sum(p.parent.name == "catlink" for p in ds.paths) == 4
    (ood / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(ZooError, match=r"ood/gone.jpg is a broken symbolic link \(to .*nowhere.jpg\)"):
        image_folder(ood, labelled=False)


@pytest.mark.parametrize("module", ["zoo.data.classification.ImageClassificationDataModule",
                                    "zoo.data.iqa_datamodule.IQADataModule",
                                    "zoo.models.drums.data.GrooveMidiDataModule",
                                    "zoo.models.cmt.datamodule.NuScenesDataModule"])
def test_every_datamodule_refuses_a_batch_below_one_or_negative_workers(module):
    """One error naming the option, at construction (PyTorch's DataLoader fails later, with a traceback)."""
    import importlib

    path, name = module.rsplit(".", 1)
    cls = getattr(importlib.import_module(path), name)
    with pytest.raises(ZooError, match=r"batch_size must be a whole number >= 1, got 0 \(--data\.init_args\.batch"):
        cls(batch_size=0)
    with pytest.raises(ZooError, match=r"num_workers must be a whole number >= 0, got -1"):
        cls(num_workers=-1)
