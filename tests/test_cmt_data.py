"""CMT data: the real keyframe's geometry, the synthetic dataroot read by the devkit, multi-sweep accumulation,
augmentations that keep the camera matrices consistent, info-pickle safety."""

import dataclasses
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_data

from zoo.data.nuscenes import (
    CAMERAS,
    box_corners,
    camera_instances,
    frames_from_devkit,
    frames_from_infos,
    lidar_to_image,
    load_images,
    load_points,
    open_nuscenes,
    read_info_pickle,
    read_lidar_file,
    split_scenes,
)
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]
KEYFRAME_PKL = "n015-2018-07-24-11-22-45+0800.pkl"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth():
    """(dataroot, devkit object, train frames, val frames) of a small synthetic dataroot."""
    from zoo.data.nuscenes_synthetic import synthetic_nuscenes

    root = synthetic_nuscenes(n_scenes=2, samples_per_scene=3, sweeps_per_sample=2, image_size=(200, 113),
                              objects=(12, 14), val_scenes=1)
    nusc = open_nuscenes(root, "v1.0-synthetic")
    return root, nusc, frames_from_devkit(nusc, "synthetic_train", 10), frames_from_devkit(nusc, "synthetic_val", 10)


def test_real_keyframe_geometry_reproduces_cam_instances():
    """Projecting the info file's 3D boxes (LiDAR frame) with its calibration reproduces the 2D centres, depths
    and 2D boxes that the mmdet3d converter stored from the devkit's global annotations."""
    from zoo.models.cmt.visualize import geometry_check

    folder = require_data("nuscenes_keyframe")
    frame = frames_from_infos(folder / KEYFRAME_PKL)[0]
    info = read_info_pickle(folder / KEYFRAME_PKL)["data_list"][0]
    assert len(frame.boxes) == sum(i["bbox_label_3d"] >= 0 for i in info["instances"]) == 68
    report = geometry_check(frame, info["cam_instances"])
    assert sum(r["n_info"] for r in report.values()) == 84
    for cam, r in report.items():
        assert r["n_zoo"] == r["n_info"], cam  # the same boxes are visible in every camera
        assert r["center_2d_px"] < 1e-3 and r["depth_m"] < 1e-4, (cam, r)
        assert r["bbox_px"] < 0.5, (cam, r)  # float32 storage of poses and boxes in the info file


def test_keyframe_boxes_contain_their_lidar_points():
    folder = require_data("nuscenes_keyframe")
    frame = frames_from_infos(folder / KEYFRAME_PKL)[0]
    pts = load_points(frame, sweeps=0)
    assert pts.shape == (34688, 5) and (pts[:, 4] == 0).all()
    info = read_info_pickle(folder / KEYFRAME_PKL)["data_list"][0]
    stored = np.array([i["num_lidar_pts"] for i in info["instances"] if i["bbox_label_3d"] >= 0])
    inside = np.array([_points_in_box(pts, b).sum() for b in frame.boxes])
    assert (np.abs(inside - stored) <= np.maximum(2, 0.1 * stored)).mean() > 0.9


def test_real_kitti_frame_rays_reach_the_boxes():
    """A second real rig (KITTI 000008, whose P2 has a translation column): the point that CMT's image PE puts at
    a pixel and depth (``ray_points``: (u d, v d, d, 1) through the inverse lidar2img) reaches each car's gravity
    centre, computed independently from its camera-frame box and lidar2cam; the LiDAR-frame box made from it holds
    the points the info file counts (within 10 %: the boxes are upright in the rectified camera frame)."""
    from zoo.models.cmt.encoding import ray_points

    folder = require_data("kitti_frame")
    info = read_info_pickle(folder / "000008.pkl")["data_list"][0]
    cam = info["images"]["CAM2"]
    lidar2cam = np.array(cam["lidar2cam"])
    img2lidar = torch.linalg.inv(torch.tensor(cam["lidar2img"], dtype=torch.float64))
    pts = np.fromfile(folder / "000008.bin", np.float32).reshape(-1, 4)
    cars = [i for i in info["instances"] if i["bbox_label_3d"] == 2]
    assert len(cars) == 6
    counted = []
    for inst in cars:
        x, y, z, length, h, w, ry = inst["bbox_3d"]  # bottom centre (y down), KITTI camera yaw
        centre = (np.linalg.inv(lidar2cam) @ [x, y - h / 2, z, 1.0])[:3]
        ray = ray_points(torch.tensor(inst["center_2d"], dtype=torch.float64), img2lidar,
                         torch.tensor([inst["depth"]], dtype=torch.float64), (0, 0, 0, 1, 1, 1))
        np.testing.assert_allclose(ray.numpy(), centre, atol=1e-3)
        inside = _points_in_box(pts, np.array([*centre, length, w, h, -ry - np.pi / 2])).sum()
        assert abs(inside - inst["num_lidar_pts"]) <= max(2, 0.1 * inst["num_lidar_pts"]), (inside, inst)
        counted.append((int(inside), inst["num_lidar_pts"]))
    # the card's sentence on these counts: the largest relative gap, the two cars furthest off by name, the
    # largest gap of the other four
    (a, b), (c, d), *rest = sorted(counted, key=lambda n: -abs(n[0] - n[1]))
    share = max(abs(x - y) / y for x, y in counted)
    card = " ".join((ROOT / "zoo" / "models" / "cmt" / "README.md").read_text().split())
    assert (f"within {100 * share:.0f} % ({a} vs {b} for the nearest, truncated car, {c} vs {d} for the next; the "
            f"other four within {max(abs(x - y) for x, y in rest)} points)") in card


def _points_in_box(pts, b, margin=0.0):
    c, s = np.cos(b[6]), np.sin(b[6])
    d = pts[:, :3] - b[:3]
    lx, ly = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
    return (np.abs(lx) <= b[3] / 2 + margin) & (np.abs(ly) <= b[4] / 2 + margin) & (np.abs(d[:, 2]) <= b[5] / 2 + margin)


def test_synthetic_dataroot_is_read_by_the_devkit(synth):
    _, nusc, train, val = synth
    assert len(train) == 3 and len(val) == 3
    f = train[-1]
    assert len(f.sweeps) == 8 and [round(s.time_lag, 2) for s in f.sweeps[:3]] == [0.05, 0.1, 0.5]
    pts = load_points(f, sweeps=0)
    counts = np.array([_points_in_box(pts, b, 0.05).sum() for b in f.boxes])
    assert np.abs(counts - f.num_lidar_pts).max() <= 0.05 * f.num_lidar_pts.max() + 3
    assert (f.num_lidar_pts > 0).sum() >= 3
    # velocities the devkit derives from consecutive annotations equal the generator's constant velocities
    # (rebuilt from the generator's seed: scene 0, the fixture's object range and length), rotated into the LiDAR
    # frame
    from zoo.data.nuscenes_synthetic import KEYFRAME_DT, _Scene, _token

    ann = [nusc.get("sample_annotation", t) for t in nusc.get("sample", f.token)["anns"]]
    speeds = np.hypot(*f.velocity.T)
    assert np.isfinite(speeds).all() and (speeds > 0.4).any()
    rng = np.random.default_rng([0, 0])
    scene = _Scene(rng, int(rng.integers(12, 14 + 1)), 3 * KEYFRAME_DT)
    instance = {_token("instance", f.scene, j): o for j, o in enumerate(scene.objects)}
    v_global = np.array([[*instance[a["instance_token"]]["velocity"], 0.0] for a in ann])
    v_lidar = (v_global @ np.linalg.inv(f.ego2global @ f.lidar2ego)[:3, :3].T)[:, :2]
    assert np.allclose(f.velocity, v_lidar, atol=1e-3)
    assert not np.allclose(f.velocity, v_global[:, :2], atol=0.1)  # the rotation matters (ego heading not 0)
    assert {a["attribute_tokens"] != [] for a in ann} >= {True}


def test_multisweep_accumulation_matches_the_devkit(synth):
    from nuscenes.utils.data_classes import LidarPointCloud

    _, nusc, _, val = synth
    f = val[-1]
    ours = load_points(f, sweeps=4, remove_close=0.0)
    pc, times = LidarPointCloud.from_file_multisweep(nusc, nusc.get("sample", f.token), "LIDAR_TOP", "LIDAR_TOP",
                                                     nsweeps=5, min_distance=0.0)
    assert ours.shape[0] == pc.points.shape[1]
    assert np.allclose(ours[:, :4], pc.points.T, atol=1e-4)
    assert np.allclose(ours[:, 4], times[0], atol=1e-6)


def _coordinate_images(frame, size=(200, 113)):
    """Images whose pixels encode their own coordinates: B = u / 200 * 250, G = v / 113 * 250."""
    w, h = size
    v, u = np.mgrid[0:h, 0:w] + 0.5
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0], img[..., 1] = u / w * 250, v / h * 250
    return [img.copy() for _ in CAMERAS]


def test_augmentations_keep_boxes_points_and_cameras_consistent(synth):
    """Random 3D rotation/scale/translation/flips and image resize/crop/flip, as the training pipeline applies
    them: (1) a point projected with the augmented lidar2img lands on the augmented pixel that showed the
    original point; (2) box headings and velocities move exactly like points."""
    from zoo.models.cmt.transforms import GlobalRotScaleTrans, ImageAug, RandomFlip3D

    frames = synth[2]
    checked = 0
    for seed in range(4):
        f = frames[seed % len(frames)]
        rng = np.random.default_rng(seed)
        b = f.boxes.astype(np.float64)
        heading = b[:, :3] + np.c_[np.cos(b[:, 6]), np.sin(b[:, 6]), 0 * b[:, 6]] * b[:, 3:4] / 2
        moved = b[:, :3] + np.c_[f.velocity, 0 * b[:, 6]]
        pts = np.concatenate([b[:, :3], heading, moved])
        s = {"boxes": b.copy(), "velocity": f.velocity.astype(np.float64), "labels": f.labels,
             "cam2img": np.stack([f.cams[c].cam2img for c in CAMERAS]),
             "lidar2cam": np.stack([f.cams[c].lidar2cam for c in CAMERAS]),
             "points": np.c_[pts, np.zeros((len(pts), 2))], "images": _coordinate_images(f)}
        GlobalRotScaleTrans()(s, rng)
        RandomFlip3D()(s, rng)
        ImageAug((64, 160), (0.8, 1.1))(s, rng)
        n = len(b)
        p = s["points"][:, :3]
        ab = s["boxes"]
        front = ab[:, :3] + np.c_[np.cos(ab[:, 6]), np.sin(ab[:, 6]), 0 * ab[:, 6]] * ab[:, 3:4] / 2
        assert np.allclose(p[:n], ab[:, :3]) and np.allclose(p[n:2 * n], front, atol=1e-6)
        assert np.allclose(p[2 * n:] - p[:n], np.c_[s["velocity"], 0 * ab[:, 6]] * 1.0, atol=1e-6)
        for k, cam in enumerate(CAMERAS):
            l2i = lidar_to_image(s["cam2img"][k], s["lidar2cam"][k])
            for i in range(n):
                q = l2i @ np.r_[p[i], 1.0]
                if q[2] < 1:
                    continue
                u, v = q[:2] / q[2]
                if not (3 <= u < 157 and 3 <= v < 61):
                    continue
                o = f.cams[cam].lidar2img @ np.r_[b[i, :3], 1.0]
                seen = s["images"][k][int(v), int(u), :2] / 250 * np.array([200, 113])
                assert np.abs(seen - o[:2] / o[2]).max() < 2.5, (cam, seen, o[:2] / o[2])
                checked += 1
    assert checked > 10


def test_modal_mask_zeroes_one_modality():
    from zoo.models.cmt.transforms import ModalMask3D

    def sample():
        return {"images": [np.full((4, 4, 3), 7, np.uint8)], "points": np.ones((5, 5), np.float32)}

    s = sample()
    ModalMask3D("lidar")(s, np.random.default_rng(0))
    assert s["points"].shape == (5, 5) and not s["points"].any() and s["images"][0].all()
    s = sample()
    ModalMask3D("camera")(s, np.random.default_rng(0))
    assert not s["images"][0].any() and s["points"].all()
    drops = {"camera": 0, "lidar": 0, None: 0}
    rng = np.random.default_rng(1)
    for _ in range(4000):
        s = sample()
        ModalMask3D()(s, rng)
        drops["camera" if not s["images"][0].any() else "lidar" if not s["points"].any() else None] += 1
    assert abs(drops["camera"] / 4000 - 0.25) < 0.03 and abs(drops["lidar"] / 4000 - 0.25) < 0.03
    drops = {"camera": 0, "lidar": 0, None: 0}
    for _ in range(4000):
        s = sample()
        ModalMask3D(p_camera=0.0, p_lidar=0.4)(s, rng)
        drops["camera" if not s["images"][0].any() else "lidar" if not s["points"].any() else None] += 1
    assert drops["camera"] == 0 and abs(drops["lidar"] / 4000 - 0.4) < 0.03


def test_modal_mask_rates_come_through_the_datamodule_or_fail_once():
    from zoo.models.cmt.dataset import CMTDataset

    ds = CMTDataset([], True, (-32, -32, -3, 32, 32, 3), modal_mask=[0.0, 0.5])
    assert (ds.mask.p_camera, ds.mask.p_lidar) == (0.0, 0.5)
    assert CMTDataset([], False, (-32, -32, -3, 32, 32, 3), modal_mask=[0.0, 0.5]).mask is None  # test split
    for bad in ([0.7, 0.6], [0.5]):
        with pytest.raises(ZooError, match="modal_mask"):
            CMTDataset([], True, (-32, -32, -3, 32, 32, 3), modal_mask=bad)


def test_box_corners_upright_in_the_world_frame():
    box = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3]])
    tilt = np.eye(4)
    a = np.deg2rad(2.0)
    tilt[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    corners = box_corners(box, tilt)[0]
    world = corners @ tilt[:3, :3].T
    assert np.allclose(np.sort(world[:, 2])[:4], np.sort(world[:, 2])[0])  # flat bottom in the world frame
    assert np.allclose(box_corners(box)[0].mean(0), box[0, :3])


def test_info_pickle_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data_list": [Evil()]}))
    with pytest.raises(ZooError, match="not allowed"):
        read_info_pickle(path)
    with pytest.raises(ZooError, match="does not exist"):
        frames_from_infos(tmp_path / "missing.pkl")
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"foo": 1}))
    with pytest.raises(ZooError, match="not an mmdet3d info pickle"):
        frames_from_infos(tmp_path / "other.pkl")
    (tmp_path / "partial.pkl").write_bytes(pickle.dumps({"data_list": [{"token": "t", "timestamp": 0.0}]}))
    with pytest.raises(ZooError, match=r"partial.pkl: an incomplete mmdet3d info pickle \(KeyError: 'lidar_points'\)"):
        frames_from_infos(tmp_path / "partial.pkl")


def test_camera_instances_on_synthetic_frames(synth):
    f = synth[3][0]
    inst = camera_instances(f, (200, 113))
    assert sum(len(v) for v in inst.values()) >= len(f.boxes) // 2
    for cam, rows in inst.items():
        for r in rows:
            x1, y1, x2, y2 = r["bbox"]
            assert 0 <= x1 <= x2 <= 200 and 0 <= y1 <= y2 <= 113 and r["depth"] > 0


def test_unknown_velocity_is_a_zero_target_not_a_dropped_box(synth):
    """The devkit gives NaN for an object seen in one sample only; mmdet3d (CMT's loader) trains it as 0, so its
    centre, size and yaw are still regressed."""
    import dataclasses

    from zoo.models.cmt.dataset import CMTDataset

    f = synth[2][0]
    velocity = f.velocity.copy()
    velocity[0] = np.nan
    frame = dataclasses.replace(f, velocity=velocity, num_lidar_pts=np.full(len(f.labels), 100))
    ds = CMTDataset([frame], False, (-54, -54, -5, 54, 54, 3), modalities=["lidar"], sweeps=1)
    gt = ds[0]["gt_boxes"]
    assert torch.isfinite(gt).all() and len(gt) == len(f.labels) and gt[0, 7:].abs().sum() == 0


def test_remove_close_drops_sweep_points_near_their_sensor_only(tmp_path):
    from zoo.data.nuscenes import Frame, Sweep

    xy = np.array([[0.5, 0.5], [0.5, 2.0], [1.5, 0.2], [-0.9, -0.9]], np.float32)
    cloud = np.c_[xy, np.zeros((4, 3), np.float32)]
    cloud.tofile(tmp_path / "key.bin")
    cloud.tofile(tmp_path / "sweep.bin")
    f = Frame("t", 0.0, tmp_path / "key.bin", np.eye(4), np.eye(4), {}, [Sweep(tmp_path / "sweep.bin", np.eye(4), 0.05)])
    assert len(load_points(f, sweeps=1, remove_close=0.0)) == 8  # CMT's loader keeps every point
    kept = load_points(f, sweeps=1)
    # the keyframe intact; of the sweep, the point within 1 m dropped ((-0.9, -0.9) is 1.27 m away: mmdet3d's square
    # would drop it too)
    assert len(kept) == 7 and np.array_equal(kept[4:, :2], xy[1:])


def test_camera_image_of_another_size_than_its_record_is_refused(synth, tmp_path):
    """A camera image downscaled after the fact keeps intrinsics for its recorded size, so every projection would
    miss (NDS 0.53 instead of 0.61, silently): devkit frames carry sample_data's width and height, and loading
    compares them with the decoded image."""
    import cv2

    f = synth[3][0]
    assert {c.size for c in f.cams.values()} == {(200, 113)}
    assert all(im.shape == (113, 200, 3) for im in load_images(f))
    back = f.cams["CAM_BACK"]
    small = tmp_path / back.path.name
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(back.path)), (100, 56)))
    frame = dataclasses.replace(f, cams={**f.cams, "CAM_BACK": dataclasses.replace(back, path=small)})
    with pytest.raises(ZooError, match=re.escape(f"{small} is 100x56 but its sample_data record says 200x113")):
        load_images(frame)


def test_truncated_camera_jpeg_is_refused_and_real_ones_load(tmp_path):
    """OpenCV decodes a cut-off JPEG with its missing rows grey and only prints a warning; the loader refuses it,
    naming the file, while the real keyframe's six JPEGs load whole."""
    folder = require_data("nuscenes_keyframe")
    frame = frames_from_infos(folder / KEYFRAME_PKL)[0]
    assert [im.shape for im in load_images(frame)] == [(900, 1600, 3)] * 6
    front = frame.cams["CAM_FRONT"]
    cut = tmp_path / front.path.name
    data = front.path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    frame = dataclasses.replace(frame, cams={**frame.cams, "CAM_FRONT": dataclasses.replace(front, path=cut)})
    with pytest.raises(ZooError, match=re.escape(f"{cut} is a truncated JPEG")):
        load_images(frame)


def test_empty_or_cut_lidar_file_is_refused(tmp_path):
    """A 0-byte sweep is no nuScenes file (it loaded as no points); a byte count that is not whole 20-byte points
    is a cut file (numpy dropped the remainder silently)."""
    from zoo.data.nuscenes import Frame, Sweep

    (tmp_path / "key.pcd.bin").write_bytes(np.ones((4, 5), np.float32).tobytes())
    (tmp_path / "sweep.pcd.bin").write_bytes(b"")
    f = Frame("t", 0.0, tmp_path / "key.pcd.bin", np.eye(4), np.eye(4), {},
              [Sweep(tmp_path / "sweep.pcd.bin", np.eye(4), 0.05)])
    assert len(load_points(f, sweeps=0)) == 4
    with pytest.raises(ZooError, match="sweep.pcd.bin is empty"):
        load_points(f, sweeps=1)
    (tmp_path / "cut.pcd.bin").write_bytes(np.ones((3, 5), np.float32).tobytes() + b"\0\0\0")
    with pytest.raises(ZooError, match="cut.pcd.bin: 63 bytes is not a whole number of nuScenes points"):
        read_lidar_file(tmp_path / "cut.pcd.bin")


def _tables_copy(root, dest):
    """The tables and maps of a synthetic dataroot (what the devkit opens), copied to ``dest`` to damage."""
    for sub in ("v1.0-synthetic", "maps"):
        shutil.copytree(root / sub, dest / sub)
    return dest


@pytest.mark.parametrize("damage, needle", [
    (lambda t: (t / "sample.json").write_text('[{"token": '),
     r"sample.json is not valid JSON \(Expecting value: line 1 column 12"),
    (lambda t: (t / "ego_pose.json").unlink(), "lacks ego_pose.json: the version folder must hold the nuScenes tables"),
    (lambda t: shutil.rmtree(t.parent / "maps"), "maps/ included"),
    (lambda t: (t / "splits.json").write_text("{"), "splits.json is not valid JSON"),
    (lambda t: (t / "splits.json").write_text("[]"), "splits.json must map each split name to a list"),
    (lambda t: (t / "sample.json").write_text("[{}]"), r"do not fit the nuScenes schema \(KeyError: 'token'\)"),
    (lambda t: (t / "calibrated_sensor.json").write_text(json.dumps(
        [{**c, "camera_intrinsic": [[1.0, 0.0], [0.0, 1.0]] if c["camera_intrinsic"] else []}
         for c in json.loads((t / "calibrated_sensor.json").read_text())])),
     r"camera_intrinsic must be a 3x3 matrix, got shape \(2, 2\)"),
    (lambda t: (t / "ego_pose.json").write_text(json.dumps(json.loads((t / "ego_pose.json").read_text())[:-3])),
     "tables in .* are inconsistent: sample .* of scene synthetic-0001 needs"),
], ids=["truncated-table", "missing-table", "no-maps", "broken-splits", "splits-not-a-map", "schema",
        "intrinsics-shape", "dangling-token"])
def test_broken_tables_give_one_error_naming_the_file(synth, tmp_path, damage, needle):
    root = _tables_copy(synth[0], tmp_path)
    damage(root / "v1.0-synthetic")
    with pytest.raises(ZooError, match=needle):
        frames_from_devkit(open_nuscenes(root, "v1.0-synthetic"), "synthetic_val", 1)


def test_folder_without_the_version_says_what_it_holds(synth, tmp_path):
    root = _tables_copy(synth[0], tmp_path / "root")
    with pytest.raises(ZooError, match=f"looks like the version folder itself: pass its parent {root}"):
        open_nuscenes(root / "v1.0-synthetic", "v1.0-synthetic")
    (tmp_path / "infos").mkdir()
    (tmp_path / "infos" / "val.pkl").write_bytes(b"")
    with pytest.raises(ZooError, match="it holds the info pickle val.pkl, which is read when given itself"):
        open_nuscenes(tmp_path / "infos", "v1.0-mini")


def test_a_wrong_version_or_split_names_what_the_dataroot_holds(synth, tmp_path):
    """`--version v1.0-mini` on a synthetic dataroot said "pass --version" to a user who had; `--split val` listed
    the splits of v1.0-mini and v1.0-trainval instead of the dataroot's own (its splits.json)."""
    root, nusc = synth[0], synth[1]
    with pytest.raises(ZooError, match=r"v1.0-mini is missing \(it holds v1.0-synthetic\); pass --version "
                                       r"v1.0-synthetic$"):
        open_nuscenes(root, "v1.0-mini")
    for split, needle in (("val", "split 'val' has no scene in"), ("nosuch", "unknown split 'nosuch': Custom split")):
        with pytest.raises(ZooError, match=f"{needle}.*; its splits are synthetic_train, synthetic_val: pass one as "
                                           f"--split$"):
            split_scenes(nusc, split)
    copy = _tables_copy(root, tmp_path)
    (copy / "v1.0-synthetic" / "splits.json").unlink()  # no split of its own: the devkit's are named
    with pytest.raises(ZooError, match="no scene in .*; v1.0-mini has mini_train/mini_val, v1.0-trainval has "
                                       "train/val"):
        split_scenes(open_nuscenes(copy, "v1.0-synthetic"), "val")


def test_a_synthetic_dataroot_at_a_given_dest_is_reused_only_with_the_parameters_it_was_made_with(tmp_path):
    """An existing ``dest`` was returned whatever it held: asking for 2 scenes where 3 had been written gave the
    3-scene data without a word."""
    from zoo.data.nuscenes_synthetic import synthetic_nuscenes

    tiny = dict(n_scenes=2, samples_per_scene=1, sweeps_per_sample=1, image_size=(64, 36), objects=(1, 2),
                azimuth_step=6.0)
    root = synthetic_nuscenes(**tiny, dest=tmp_path / "synth")
    assert synthetic_nuscenes(**tiny, dest=tmp_path / "synth") == root
    with pytest.raises(ZooError, match=r"made with other parameters: n_scenes 2 \(asked 3\); give another dest"):
        synthetic_nuscenes(**{**tiny, "n_scenes": 3}, dest=root)
    (tmp_path / "mine").mkdir()
    with pytest.raises(ZooError, match=r"mine exists but has no readable synthetic.json"):
        synthetic_nuscenes(**tiny, dest=tmp_path / "mine")


def test_fitting_on_one_pickle_needs_its_validation_frames(tmp_path):
    """An info pickle holds one split (the splits do not apply to it): fitting on one with validation is refused
    until ``val_data`` names the validation frames, which then come from there (here a pickle of the keyframe
    twice)."""
    from zoo.models.cmt.datamodule import NuScenesDataModule

    folder = require_data("nuscenes_keyframe")
    with pytest.raises(ZooError, match=r"holds one split .*score the training frames; give the validation frames as "
                                       r"--data.init_args.val_data"):
        NuScenesDataModule(data="nuscenes_keyframe", num_workers=0).setup("fit")
    infos = read_info_pickle(folder / KEYFRAME_PKL)
    infos["data_list"] = infos["data_list"] * 2
    (tmp_path / "val.pkl").write_bytes(pickle.dumps(infos))
    dm = NuScenesDataModule(data="nuscenes_keyframe", val_data=str(tmp_path / "val.pkl"), data_root=str(folder),
                            num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 1 and len(dm.val_set) == 2
