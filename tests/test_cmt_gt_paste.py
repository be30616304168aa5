"""CMT's training-set recipe: the GT-paste database, multi-modal GT-paste (points and image crops) and CBGS
resampling, with their geometry checked against the devkit and shapely."""

import numpy as np
import pytest
from conftest import require_data

from zoo.data.nuscenes import CAMERAS, CLASSES, bev_overlaps, box_corners, load_images, load_points, pad4, \
    points_in_boxes
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")

SYNTH = dict(n_scenes=2, samples_per_scene=3, sweeps_per_sample=2, image_size=(200, 113), objects=(12, 14),
             val_scenes=1)


def _random_boxes(rng, n):
    return np.c_[rng.uniform(-6, 6, (n, 2)), rng.uniform(-1, 1, n), rng.uniform(0.5, 5, (n, 3)),
                 rng.uniform(-np.pi, np.pi, n)]


def test_points_in_boxes_match_the_devkit():
    from nuscenes.utils.data_classes import Box
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion

    rng = np.random.default_rng(0)
    boxes, points = _random_boxes(rng, 20), rng.uniform(-9, 9, (4000, 3))
    ours = points_in_boxes(points, boxes)
    for i, b in enumerate(boxes):  # the devkit's Box: size (w, l, h), x along the length
        ref = points_in_box(Box(b[:3], [b[4], b[3], b[5]], Quaternion(axis=[0, 0, 1], radians=b[6])), points.T)
        np.testing.assert_array_equal(ours[:, i], ref)
    assert 0 < ours.sum() < ours.size


def test_bev_overlaps_match_shapely():
    from shapely.geometry import Polygon

    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    ours = bev_overlaps(a, b)
    pa = [Polygon(c[[0, 1, 5, 4], :2]) for c in box_corners(a)]
    pb = [Polygon(c[[0, 1, 5, 4], :2]) for c in box_corners(b)]
    area = np.array([[p.intersection(q).area for q in pb] for p in pa])
    np.testing.assert_array_equal(ours, area > 0)
    assert 0.1 < ours.mean() < 0.9
    # two unit squares one metre apart touch: no overlap; a rotated square reaching across overlaps
    sq = np.array([[0, 0, 0, 1, 1, 1, 0.0], [1, 0, 0, 1, 1, 1, 0.0], [0.9, 0, 0, 1, 1, 1, np.pi / 4]])
    assert not bev_overlaps(sq[:1], sq[1:2])[0, 0] and bev_overlaps(sq[:1], sq[2:3])[0, 0]


def test_cbgs_gives_every_present_class_the_same_share():
    from zoo.models.cmt.cbgs import cbgs_indices

    # 100 frames: class 0 in all, class 1 in the first 5, class 3 in frames 50-79 (twice each); class 2 nowhere
    labels = [np.array([0] + [1] * (f < 5) + [3, 3] * (50 <= f < 80)) for f in range(100)]
    idx = cbgs_indices(labels, 4, np.random.default_rng(0))
    total = 100 + 5 + 30  # frames holding each class, summed
    assert len(idx) == 3 * (total // 4)
    holds = lambda c: np.array([c in labels[i] for i in idx])  # noqa: E731
    assert holds(1).sum() >= total // 4 and set(idx[holds(1)]) <= set(range(5))  # the rare class recurs
    assert holds(0).mean() == 1.0 and 0.24 < holds(3).mean() < 0.5
    np.testing.assert_array_equal(idx, cbgs_indices(labels, 4, np.random.default_rng(0)))
    assert len(cbgs_indices([np.zeros(0, int)], 4, np.random.default_rng(0))) == 0


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """(train frames, database folder) of a small synthetic dataroot."""
    from zoo.data.nuscenes import frames_from_devkit, open_nuscenes
    from zoo.data.nuscenes_synthetic import synthetic_nuscenes
    from zoo.models.cmt.gt_database import build_gt_database

    frames = frames_from_devkit(open_nuscenes(synthetic_nuscenes(**SYNTH), "v1.0-synthetic"), "synthetic_train", 2)
    return frames, build_gt_database(frames, tmp_path_factory.mktemp("db") / "gt", sweeps=2)


def test_the_database_holds_each_object_points_and_largest_crop(database):
    import cv2

    from zoo.models.cmt.gt_database import load_gt_database

    frames, folder = database
    infos = load_gt_database(folder)
    by_token = {f.token: f for f in frames}
    assert sum(len(v) for v in infos.values()) == sum(len(f.boxes) for f in frames)
    crops = 0
    for name, rows in infos.items():
        for r in rows:
            f = by_token[r["token"]]
            assert f.names[r["index"]] == name
            pts = np.load(folder / r["points"])
            assert len(pts) == r["num_points"] == points_in_boxes(load_points(f, 2), f.boxes[r["index"]][None]).sum()
            assert points_in_boxes(pts[:, :3] + r["box"][:3], r["box"][None]).all()
            if r["image"]:
                crops += 1
                crop = cv2.imread(str(folder / r["image"]))
                assert min(crop.shape[:2]) > 10 and r["camera"] in CAMERAS
    assert crops > 0
    with pytest.raises(ZooError, match="not a GT-paste database"):
        load_gt_database(folder.parent)


def test_real_keyframe_crops_come_from_cameras_that_see_the_object(tmp_path):
    """On the real nuScenes keyframe, each stored crop's camera is one the mmdet3d converter's ``cam_instances``
    lists for that box (reproduced by `camera_instances`, tested in test_cmt_data.py), of that entry's 2D box size."""
    from zoo.data.nuscenes import camera_instances, frames_from_infos
    import cv2

    from zoo.models.cmt.gt_database import build_gt_database, load_gt_database

    folder = require_data("nuscenes_keyframe")
    frame = frames_from_infos(next(folder.glob("*.pkl")), folder)[0]
    infos = load_gt_database(build_gt_database([frame], tmp_path / "db", sweeps=0))
    bbox = {(cam, r["index"]): r["bbox"] for cam, rows in camera_instances(frame).items() for r in rows}
    rows = [r for v in infos.values() for r in v]
    assert len(rows) == 68 and sum(bool(r["image"]) for r in rows) == 68
    for r in rows:
        if r["image"]:
            x0, y0, x1, y1 = bbox[(r["camera"], r["index"])]  # KeyError: a camera that does not see it
            h, w = cv2.imread(str(tmp_path / "db" / r["image"])).shape[:2]
            # within 8 px (measured: 6.8): the database's 7-DoF boxes are upright in the LiDAR frame, as the
            # authors', the converter's in the world frame; and the crop's corners are cut to whole pixels
            assert abs(h - (y1 - y0)) <= 8 and abs(w - (x1 - x0)) <= 8 and min(h, w) > 10


def _sample(frame, boxes=True):
    keep = slice(None) if boxes else slice(0, 0)
    return {"boxes": frame.boxes[keep].astype(np.float64), "velocity": frame.velocity[keep].astype(np.float64),
            "labels": frame.labels[keep], "points": load_points(frame, 2), "images": load_images(frame),
            "cam2img": np.stack([frame.cams[c].cam2img for c in CAMERAS]),
            "lidar2cam": np.stack([frame.cams[c].lidar2cam for c in CAMERAS])}


def test_paste_adds_collision_free_objects_with_their_points(database):
    from zoo.models.cmt.object_sample import SAMPLE_GROUPS, ObjectSample

    frames, folder = database
    paste = ObjectSample(folder, min_points=5)
    for seed, frame in enumerate(frames):
        s = _sample(frame)
        n, before = len(s["boxes"]), s["points"].copy()
        picked = ObjectSample.draw(paste, s["boxes"], s["labels"], np.random.default_rng(seed))
        paste.draw = lambda *a, **k: picked  # noqa: B023 (the same draw, to know the pasted objects)
        paste(s, np.random.default_rng(seed))
        new = s["boxes"][n:]
        assert len(new) > 0 and len(s["labels"]) == len(s["velocity"]) == len(s["boxes"])
        overlap = bev_overlaps(new, s["boxes"])
        overlap[:, n:][np.diag_indices(len(new))] = False  # a box with itself
        assert not overlap.any()
        for c, name in enumerate(CLASSES):
            assert (s["labels"] == c).sum() <= max(SAMPLE_GROUPS[name], (frame.labels == c).sum())
        inside = points_in_boxes(s["points"], new)
        np.testing.assert_array_equal(inside.sum(0), [p["num_points"] for p in picked])  # only theirs
        assert inside.sum(0).min() >= 5  # the min_points filter
        outside_before = before[~points_in_boxes(before, new).any(1)]
        np.testing.assert_array_equal(s["points"][~inside.any(1)], outside_before)


def _box_extents(boxes, lidar2img, h, w):
    uvz = np.c_[box_corners(boxes).reshape(-1, 3), np.ones(8 * len(boxes))] @ lidar2img.T
    uvz = uvz.reshape(len(boxes), 8, 4)
    front = (uvz[..., 2] > 0).all(1)
    uv = uvz[..., :2] / np.abs(uvz[..., 2:3])
    ext = [np.clip([uv[i, :, 0].min(), uv[i, :, 0].max()], 0, w - 1).astype(int).tolist()
           + np.clip([uv[i, :, 1].min(), uv[i, :, 1].max()], 0, h - 1).astype(int).tolist() for i in range(len(uv))]
    return np.array(ext), front, uvz[..., 2].mean(1)


def test_pasted_crops_are_painted_far_to_near(database):
    """Per pixel, the nearest box covering it decides: a frame box keeps the frame's pixel, a pasted box shows its
    resized crop (mixup off); pixels no box covers are unchanged; mixup 0.5 blends with what lay beneath."""
    import cv2

    from zoo.models.cmt.object_sample import ObjectSample

    frames, folder = database
    frame = frames[1]
    checked = 0
    for mixup in (-1.0, 0.5):
        s = _sample(frame)
        original, n = [im.copy() for im in s["images"]], len(s["boxes"])
        paste = ObjectSample(folder, mixup=mixup)
        picked = paste.draw(s["boxes"], s["labels"], np.random.default_rng(3))
        paste.draw = lambda *a, **k: picked  # the same draw for the oracle below
        paste(s, np.random.default_rng(3))
        crops = [cv2.imread(str(folder / p["image"])) if p["image"] else None for p in picked]
        for v in range(len(CAMERAS)):
            img, h, w = original[v], *original[v].shape[:2]
            ext, front, depth = _box_extents(s["boxes"], pad4(s["cam2img"][v]) @ s["lidar2cam"][v], h, w)
            nearest = np.full((h, w), -1)
            near_depth = np.full((h, w), np.inf)
            for i in np.flatnonzero(front & (ext[:, 1] - ext[:, 0] > 1) & (ext[:, 3] - ext[:, 2] > 1)):
                if i >= n and crops[i - n] is None:
                    continue
                x0, x1, y0, y1 = ext[i]
                region = near_depth[y0:y1, x0:x1] > depth[i]
                nearest[y0:y1, x0:x1][region] = i
                near_depth[y0:y1, x0:x1][region] = depth[i]
            out = s["images"][v]
            if not (nearest >= n).any():
                np.testing.assert_array_equal(out, img)
                continue
            np.testing.assert_array_equal(out[nearest < 0], img[nearest < 0])
            if mixup < 0:
                np.testing.assert_array_equal(out[(nearest >= 0) & (nearest < n)], img[(nearest >= 0) & (nearest < n)])
            for i in set(nearest[nearest >= n].tolist()):
                x0, x1, y0, y1 = ext[i]
                patch = cv2.resize(crops[i - n], (x1 - x0, y1 - y0))
                mine = nearest[y0:y1, x0:x1] == i
                got = out[y0:y1, x0:x1][mine].astype(int)
                if mixup < 0:
                    np.testing.assert_array_equal(got, patch[mine])
                else:  # the blend's other half is whatever lay beneath: within half a grey level of 0.5 * patch
                    assert (got - 0.5 * patch[mine] >= -0.5).all() and (got - 0.5 * patch[mine] <= 128).all()
                checked += int(mine.sum())
    assert checked > 1000


def test_datamodule_builds_the_database_and_resamples(tmp_path):
    from zoo.models.cmt.cbgs import CBGSDataset
    from zoo.models.cmt.datamodule import NuScenesDataModule

    common = dict(data="synthetic", synthetic=SYNTH, point_cloud_range=[-32.0, -32.0, -3.0, 32.0, 32.0, 3.0],
                  image_size=[64, 128], resize_lim=[0.5, 0.7], sweeps=2, num_workers=0)
    dm = NuScenesDataModule(**common, gt_paste={"database": str(tmp_path / "db"), "mixup": 0.5}, cbgs=True)
    dm.prepare_data()
    assert (tmp_path / "db" / "dbinfos.pkl").is_file()
    dm.setup("fit")
    assert isinstance(dm.train_set, CBGSDataset) and len(dm.train_set) > len(dm.train_set.dataset)
    base = dm.train_set.dataset
    assert base.gt_paste is not None and dm.val_set.gt_paste is None
    items = [dm.train_set[k] for k in range(4)]
    own = sum(len(base.frames[int(i)].boxes) for i in dm.train_set.indices[:4])
    assert sum(len(it["gt_boxes"]) for it in items) > own  # pasted objects (the range filter cuts a few)
    assert items[0]["images"].shape[-2:] == (64, 128)
    with pytest.raises(ZooError, match="gt_paste takes"):
        bad = NuScenesDataModule(**common, gt_paste={"database": str(tmp_path / "db"), "mix": 0.5})
        bad.setup("fit")
    with pytest.raises(ZooError, match="gt_paste needs gt_paste.database"):
        NuScenesDataModule(**{**common, "data": str(tmp_path / "infos.pkl")}, gt_paste={}).gt_database()


def test_gt_database_cli_refuses_an_existing_folder(database, capsys):
    from zoo.models.cmt.gt_database import main

    with pytest.raises(ZooError, match="exists"):
        main(["--data", "synthetic_unused", "--out", str(database[1])])


def test_paste_stops_after_its_epochs(tmp_path):
    """The authors' "15e + 5e": GT-paste in the loaders of the first N epochs only."""
    from types import SimpleNamespace

    from zoo.models.cmt.datamodule import NuScenesDataModule

    dm = NuScenesDataModule(data="synthetic", synthetic=SYNTH, sweeps=2, num_workers=0, cbgs=True,
                            gt_paste={"database": str(tmp_path / "db"), "epochs": 4})
    dm.prepare_data()
    dm.setup("fit")
    base = dm.train_set.dataset
    pasting = []
    for epoch in (0, 2, 3, 4, 6, 2):
        dm.trainer = SimpleNamespace(current_epoch=epoch, reload_dataloaders_every_n_epochs=2)
        assert dm.train_dataloader().dataset.dataset is dm.train_set
        pasting.append(base.gt_paste is not None)
    assert pasting == [True, True, True, False, False, True]
    dm.trainer = SimpleNamespace(current_epoch=0, reload_dataloaders_every_n_epochs=3)
    with pytest.raises(ZooError, match="reload_dataloaders_every_n_epochs to 4"):
        dm.train_dataloader()


def test_pasted_objects_of_unknown_velocity_move_at_zero(database):
    """A database keeps the devkit's NaN velocity (an object seen in one sample only); pasted, it is 0, as the
    frame's own boxes (a NaN target would drop the box from the regression losses)."""
    from zoo.models.cmt.object_sample import ObjectSample

    frames, folder = database
    paste = ObjectSample(folder, min_points=5)
    paste.pools = {c: [dict(p, velocity=np.full(2, np.nan)) for p in pool] for c, pool in paste.pools.items()}
    s = _sample(frames[0])
    n, own = len(s["boxes"]), s["velocity"].copy()
    paste(s, np.random.default_rng(0))
    assert len(s["velocity"]) > n and (s["velocity"][n:] == 0).all()
    np.testing.assert_array_equal(s["velocity"][:n], own)
