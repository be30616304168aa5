"""nuScenes frames for camera + LiDAR 3D detection: read through the official nuscenes-devkit or from the
mmdet3d info pickles that CMT users already have, and load their points and images.

A `Frame` is one keyframe in the LiDAR frame of reference (the frame mmdet3d >= 1.0 and CMT use):

* ``boxes`` [N, 7]: x, y, z of the box's *gravity centre*, l (x_size, along the heading), w (y_size), h,
  yaw (about z, from the x axis); ``velocity`` [N, 2] (vx, vy, m/s, NaN where the devkit cannot estimate it);
  ``names`` the detection classes; ``num_lidar_pts`` per box.
* ``cams``: the six cameras in mmdet3d's order, each with its image file, intrinsics ``cam2img`` [3, 3] and
  extrinsics ``lidar2cam`` [4, 4]; ``lidar2img = pad4(cam2img) @ lidar2cam``.
* ``sweeps``: previous LiDAR sweeps, each with ``sensor2lidar`` [4, 4] (ego motion included) and its time lag.

`load_points` accumulates the keyframe and its sweeps into [P, 5] (x, y, z, intensity, time lag in s), as
mmdet3d's ``LoadPointsFromMultiSweeps`` does; `camera_instances` projects the boxes into the cameras the way the
mmdet3d converter made ``cam_instances`` (centre, depth, 2D box of the visible hull).
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ZooError, require

# Class order of the CMT configs (and of mmdet3d < 1.1 nuScenes configs); model outputs use these indices.
CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone")
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


@dataclass
class Sweep:
    path: Path
    sensor2lidar: np.ndarray  # [4, 4]: sweep sensor frame (at its time) -> keyframe LiDAR frame
    time_lag: float  # keyframe time - sweep time, s (>= 0)


@dataclass
class Camera:
    path: Path
    cam2img: np.ndarray  # [3, 3] intrinsics
    lidar2cam: np.ndarray  # [4, 4]
    size: tuple[int, int] | None = None  # (width, height) the intrinsics are for, where the source records it

    @property
    def lidar2img(self) -> np.ndarray:
        """[4, 4] = intrinsics padded to 4x4 @ lidar2cam."""
        return lidar_to_image(self.cam2img, self.lidar2cam)


@dataclass
class Frame:
    token: str
    timestamp: float  # s
    lidar_path: Path
    lidar2ego: np.ndarray  # [4, 4]
    ego2global: np.ndarray  # [4, 4]
    cams: dict[str, Camera]
    sweeps: list[Sweep] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    velocity: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    names: list[str] = field(default_factory=list)
    num_lidar_pts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    attributes: list[str] = field(default_factory=list)  # nuScenes attribute names ("" if none); devkit frames only
    scene: str = ""

    @property
    def labels(self) -> np.ndarray:
        """[N] indices into `CLASSES`."""
        return np.array([CLASSES.index(n) for n in self.names], dtype=np.int64)


def pad4(m: np.ndarray) -> np.ndarray:
    """A 3x3 (or smaller) matrix embedded in the top-left of a 4x4 identity."""
    out = np.eye(4, dtype=np.float64)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def lidar_to_image(cam2img: np.ndarray, lidar2cam: np.ndarray) -> np.ndarray:
    """Intrinsics [3, 3] and extrinsics [4, 4] -> lidar2img [4, 4] = pad4(cam2img) @ lidar2cam."""
    return pad4(cam2img) @ lidar2cam


def _matrix(translation, rotation) -> np.ndarray:
    Quaternion = require("pyquaternion", "det3d").Quaternion

    m = np.eye(4)
    m[:3, :3] = Quaternion(rotation).rotation_matrix
    m[:3, 3] = translation
    return m


# --------------------------------------------------------------------------------------------------------------
# The devkit

# The tables the devkit loads (its ``NuScenes.table_names``); each is ``<dataroot>/<version>/<table>.json``.
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
          "scene", "sample", "sample_data", "sample_annotation", "map")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def open_nuscenes(dataroot: str | Path, version: str):
    """A devkit ``NuScenes`` object, or a `ZooError` naming the missing or broken folder or table."""
    require("nuscenes", "det3d")
    from nuscenes import NuScenes

    root = Path(dataroot)
    tables = root / version
    if not tables.is_dir():
        raise ZooError(f"{root} is not a nuScenes dataroot for version {version!r}: {tables} is missing"
                       f"{_dataroot_hint(root)}")
    missing = [f"{t}.json" for t in TABLES if not (tables / f"{t}.json").is_file()]
    if missing:
        raise ZooError(f"{tables} lacks {', '.join(missing)}: the version folder must hold the nuScenes tables "
                       f"({', '.join(TABLES)}, each a .json file)")
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError: the devkit does not say which file
        raise ZooError(_invalid_table(tables) or f"cannot read the nuScenes tables in {tables}: {exc}") from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ZooError(f"the nuScenes tables in {tables} do not fit the nuScenes schema ({type(exc).__name__}: "
                       f"{exc}): restore them from the nuScenes download") from None
    except AssertionError as exc:  # the devkit's checks of the files beside the tables (maps/, lidarseg/)
        raise ZooError(f"the nuScenes devkit cannot open {root}: {exc}; the dataroot must hold the whole download "
                       f"(maps/ included)") from None


def _dataroot_hint(root: Path) -> str:
    """What a folder without the requested version folder holds instead, as the end of an error message."""
    found = sorted(p.name for p in root.glob("v1.0-*") if p.is_dir())
    pickles = sorted(p.name for p in root.glob("*.pkl"))
    if found:
        return f" (it holds {', '.join(found)}); pass --version {' or --version '.join(found)}"
    if (root / "sample.json").is_file():
        return f"; {root} looks like the version folder itself: pass its parent {root.parent}"
    if pickles:
        return (f"; it holds the info pickle {pickles[0]}, which is read when given itself as the data, but the "
                f"devkit's scoring needs the dataroot with its tables")
    return ""


def _invalid_table(folder: Path) -> str | None:
    """A message naming the first ``.json`` file in ``folder`` that is not valid JSON, or None (the error
    path only: it parses the tables again)."""
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_bytes())
        except ValueError as exc:
            return (f"nuScenes table {path} is not valid JSON ({exc}): the file is truncated or damaged; restore it "
                    f"from the nuScenes download")
    return None


def unpack_dataroot(archive: Path, version: str) -> Path:
    """A nuScenes dataroot packed as a .tar, .tar.gz or .tgz, unpacked once into the cache as the image tasks
    unpack theirs: the unpacked folder, or its one folder holding ``<version>/`` when the archive wraps the
    dataroot in a folder of its own."""
    from .catalog import unpack_user_archive

    root = unpack_user_archive(archive)
    if (root / version).is_dir():
        return root
    inner = [p for p in root.iterdir() if (p / version).is_dir()]
    return inner[0] if len(inner) == 1 else root


def split_scenes(nusc, split: str) -> list[str]:
    """Scene names of a predefined split (``mini_val``, ``val``...) or of a custom split in
    ``<dataroot>/<version>/splits.json``."""
    from nuscenes.utils.splits import create_splits_scenes, get_scenes_of_custom_split, is_predefined_split

    if is_predefined_split(split):
        names = create_splits_scenes()[split]
    else:
        path = Path(nusc.dataroot) / nusc.version / "splits.json"
        try:
            names = get_scenes_of_custom_split(split, nusc)
        except json.JSONDecodeError as exc:
            raise ZooError(f"{path} is not valid JSON ({exc}): fix it or restore it") from None
        except ValueError as exc:
            raise ZooError(f"unknown split {split!r}: {str(exc).rstrip('.')}{_splits_hint(nusc)}") from None
        except (AttributeError, AssertionError):
            raise ZooError(f"{path} must map each split name to a list of scene names, e.g. "
                           f'{{"{split}": ["scene-0001"]}}') from None
    present = {s["name"] for s in nusc.scene}
    names = [n for n in names if n in present]
    if not names:
        raise ZooError(f"split {split!r} has no scene in {nusc.dataroot} ({nusc.version}){_splits_hint(nusc)}")
    return names


def _splits_hint(nusc) -> str:
    """The splits that ``nusc``'s dataroot and version hold, as the end of an error message (the error path
    only): those of its ``splits.json`` with a scene it holds, then the devkit's predefined splits all of whose
    scenes it holds."""
    from nuscenes.utils.splits import create_splits_scenes

    present = {s["name"] for s in nusc.scene}
    try:
        custom = json.loads((Path(nusc.dataroot) / nusc.version / "splits.json").read_text())
    except (OSError, ValueError):
        custom = {}
    own = [name for name, scenes in (custom.items() if isinstance(custom, dict) else ())
           if isinstance(scenes, list) and present.intersection(map(str, scenes))]
    own += [name for name, scenes in create_splits_scenes().items() if name not in own and set(scenes) <= present]
    if not own:
        return "; v1.0-mini has mini_train/mini_val, v1.0-trainval has train/val (or name your own in splits.json)"
    return f"; its splits are {', '.join(own)}: pass one as --split"


def frames_from_devkit(nusc, split: str, sweeps: int = 10) -> list[Frame]:
    """Every keyframe of ``split`` as a `Frame`, with up to ``sweeps`` previous LiDAR sweeps."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    scenes = set(split_scenes(nusc, split))
    frames = []
    for scene in nusc.scene:
        if scene["name"] not in scenes:
            continue
        token = scene["first_sample_token"]
        while token:
            try:
                sample = nusc.get("sample", token)
                frames.append(_devkit_frame(nusc, sample, sweeps, scene["name"], category_to_detection_name))
            except KeyError as exc:  # a token no table holds, a camera channel or a field the sample lacks
                raise ZooError(f"the nuScenes tables in {Path(nusc.dataroot) / nusc.version} are inconsistent: "
                               f"sample {token} of scene {scene['name']} needs {exc}, which they do not hold; "
                               f"restore them from the nuScenes download") from None
            token = sample["next"]
    return frames


def _devkit_frame(nusc, sample, n_sweeps, scene_name, to_detection_name) -> Frame:
    root = Path(nusc.dataroot)
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    lidar2ego = _matrix(*_calib(nusc, lidar))
    ego2global = _matrix(*_pose(nusc, lidar))
    global2lidar = np.linalg.inv(ego2global @ lidar2ego)
    t0 = lidar["timestamp"] * 1e-6

    sweeps, sd = [], lidar
    while len(sweeps) < n_sweeps and sd["prev"]:
        sd = nusc.get("sample_data", sd["prev"])
        sensor2global = _matrix(*_pose(nusc, sd)) @ _matrix(*_calib(nusc, sd))
        sweeps.append(Sweep(root / sd["filename"], global2lidar @ sensor2global, t0 - sd["timestamp"] * 1e-6))

    cams = {}
    for name in CAMERAS:
        sd = nusc.get("sample_data", sample["data"][name])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        cam2global = _matrix(*_pose(nusc, sd)) @ _matrix(cs["translation"], cs["rotation"])
        cams[name] = Camera(root / sd["filename"], _intrinsics(cs, name),
                            np.linalg.inv(cam2global) @ ego2global @ lidar2ego,
                            (sd["width"], sd["height"]) if sd.get("width") and sd.get("height") else None)

    boxes, velocity, names, npts, attrs = [], [], [], [], []
    for ann_token in sample["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        name = to_detection_name(ann["category_name"])
        if name is None:
            continue
        box = nusc.get_box(ann_token)
        center = (global2lidar @ np.append(box.center, 1.0))[:3]
        heading = global2lidar[:3, :3] @ box.orientation.rotation_matrix[:, 0]
        w, l, h = box.wlh
        boxes.append([*center, l, w, h, np.arctan2(heading[1], heading[0])])
        v = nusc.box_velocity(ann_token)
        velocity.append((global2lidar[:3, :3] @ np.nan_to_num(v, nan=0.0))[:2] if np.isfinite(v).all()
                        else [np.nan, np.nan])
        names.append(name)
        npts.append(ann["num_lidar_pts"])
        attrs.append(nusc.get("attribute", ann["attribute_tokens"][0])["name"] if ann["attribute_tokens"] else "")
    return Frame(
        token=sample["token"], timestamp=t0, lidar_path=root / lidar["filename"], lidar2ego=lidar2ego,
        ego2global=ego2global, cams=cams, sweeps=sweeps,
        boxes=np.array(boxes, np.float32).reshape(-1, 7), velocity=np.array(velocity, np.float32).reshape(-1, 2),
        names=names, num_lidar_pts=np.array(npts, np.int64), attributes=attrs, scene=scene_name)


def _intrinsics(cs: dict, channel: str) -> np.ndarray:
    """The [3, 3] ``camera_intrinsic`` of a calibrated_sensor record, or a `ZooError` naming the record."""
    k = np.array(cs["camera_intrinsic"], dtype=np.float64)
    if k.shape != (3, 3):
        raise ZooError(f"calibrated_sensor {cs['token']} ({channel}): camera_intrinsic must be a 3x3 matrix, got "
                       f"shape {k.shape}: restore the table from the nuScenes download")
    return k


def _calib(nusc, sd):
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return cs["translation"], cs["rotation"]


def _pose(nusc, sd):
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return pose["translation"], pose["rotation"]


# --------------------------------------------------------------------------------------------------------------
# mmdet3d info pickles


class _InfoUnpickler(pickle.Unpickler):
    """Plain containers and numpy arrays only: an info file that references anything else is refused."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
               ("_codecs", "encode")}  # protocol-2 pickles store array bytes through _codecs.encode

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in an info file")


def read_info_pickle(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"info file {path} does not exist")
    try:
        return _InfoUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ZooError(f"cannot read {path} as an mmdet3d info pickle ({exc})") from None


def frames_from_infos(path: str | Path, data_root: str | Path | None = None) -> list[Frame]:
    """Frames of an mmdet3d info pickle: the >= 1.1 layout (``metainfo``, ``data_list``) or the 1.0 layout that
    CMT's converter writes (``infos``, ``metadata``). Relative file names resolve against ``data_root`` (default:
    the pickle's folder; for the 1.0 layout, paths are kept as stored when they exist)."""
    path = Path(path)
    info = read_info_pickle(path)
    root = Path(data_root) if data_root else path.parent
    try:
        if isinstance(info, dict) and "data_list" in info:
            return [_v2_frame(d, info.get("metainfo", {}), root) for d in info["data_list"]]
        if isinstance(info, dict) and "infos" in info:
            return [_v1_frame(d, root) for d in info["infos"]]
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ZooError(f"{path}: an incomplete mmdet3d info pickle ({type(exc).__name__}: {exc}): write it again "
                       f"with mmdet3d's converter") from None
    raise ZooError(f"{path}: not an mmdet3d info pickle (expected keys 'metainfo'/'data_list' or 'infos')")


def _resolve(root: Path, name: str, subdir: str = "") -> Path:
    p = Path(name)
    for cand in (p, root / p, root / subdir / p.name, root / p.name):
        if cand.exists():
            return cand
    return root / p


def _v2_frame(d: dict, metainfo: dict, root: Path) -> Frame:
    categories = metainfo.get("categories") or {c: i for i, c in enumerate(CLASSES)}
    index_to_name = {v: k for k, v in categories.items()}
    lidar = d["lidar_points"]
    lidar2ego = np.array(lidar["lidar2ego"], np.float64)
    ego2global = np.array(d["ego2global"], np.float64)
    t0 = float(d["timestamp"])
    cams = {}
    for name in CAMERAS:
        c = d["images"][name]
        cams[name] = Camera(_resolve(root, c["img_path"], f"samples/{name}"), np.array(c["cam2img"], np.float64),
                            np.array(c["lidar2cam"], np.float64))
    sweeps = []
    for s in d.get("lidar_sweeps", []):
        pts = s["lidar_points"]
        sweeps.append(Sweep(_resolve(root, pts["lidar_path"], "sweeps/LIDAR_TOP"),
                            np.linalg.inv(np.array(pts["lidar2sensor"], np.float64)), t0 - float(s["timestamp"])))
    keep = [i for i in d.get("instances", []) if index_to_name.get(i["bbox_label_3d"]) in CLASSES]
    return Frame(
        token=d["token"], timestamp=t0, lidar_path=_resolve(root, lidar["lidar_path"], "samples/LIDAR_TOP"),
        lidar2ego=lidar2ego, ego2global=ego2global, cams=cams, sweeps=sweeps,
        boxes=np.array([i["bbox_3d"] for i in keep], np.float32).reshape(-1, 7),
        velocity=np.array([i["velocity"] for i in keep], np.float32).reshape(-1, 2),
        names=[index_to_name[i["bbox_label_3d"]] for i in keep],
        num_lidar_pts=np.array([i.get("num_lidar_pts", 1) for i in keep], np.int64))


def _rt(rotation, translation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.asarray(rotation)
    m[:3, 3] = np.asarray(translation)
    return m


def _v1_frame(d: dict, root: Path) -> Frame:
    Quaternion = require("pyquaternion", "det3d").Quaternion

    lidar2ego = _matrix(d["lidar2ego_translation"], Quaternion(d["lidar2ego_rotation"]))
    ego2global = _matrix(d["ego2global_translation"], Quaternion(d["ego2global_rotation"]))
    t0 = d["timestamp"] * 1e-6
    cams = {}
    for name in CAMERAS:
        c = d["cams"][name]
        cams[name] = Camera(_resolve(root, c["data_path"], f"samples/{name}"), np.array(c["cam_intrinsic"]),
                            np.linalg.inv(_rt(c["sensor2lidar_rotation"], c["sensor2lidar_translation"])))
    sweeps = [Sweep(_resolve(root, s["data_path"], "sweeps/LIDAR_TOP"),
                    _rt(s["sensor2lidar_rotation"], s["sensor2lidar_translation"]), t0 - s["timestamp"] * 1e-6)
              for s in d.get("sweeps", [])]
    names = list(d.get("gt_names", []))
    keep = [i for i, n in enumerate(names) if n in CLASSES]
    return Frame(
        token=d["token"], timestamp=t0, lidar_path=_resolve(root, d["lidar_path"], "samples/LIDAR_TOP"),
        lidar2ego=lidar2ego, ego2global=ego2global, cams=cams, sweeps=sweeps,
        boxes=np.asarray(d.get("gt_boxes", np.zeros((0, 7))), np.float32)[keep].reshape(-1, 7),
        velocity=np.asarray(d.get("gt_velocity", np.zeros((0, 2))), np.float32)[keep].reshape(-1, 2),
        names=[names[i] for i in keep],
        num_lidar_pts=np.asarray(d.get("num_lidar_pts", np.ones(len(names))), np.int64)[keep])


# --------------------------------------------------------------------------------------------------------------
# Sensor data


def read_lidar_file(path: Path) -> np.ndarray:
    """[P, 5] float32 (x, y, z, intensity, ring) from a nuScenes ``.pcd.bin``."""
    if not path.is_file():
        raise ZooError(f"LiDAR file {path} does not exist: check the dataroot (or data_root of the info file)")
    size = path.stat().st_size
    if size == 0:
        raise ZooError(f"LiDAR file {path} is empty: a nuScenes sweep holds points; restore the file")
    if size % 20:
        raise ZooError(f"LiDAR file {path}: {size} bytes is not a whole number of nuScenes points (5 float32, 20 "
                       f"bytes each): the file is truncated or not a .pcd.bin; restore it")
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


def load_points(frame: Frame, sweeps: int = 10, remove_close: float = 1.0) -> np.ndarray:
    """Keyframe plus up to ``sweeps`` previous sweeps in the keyframe's LiDAR frame.

    Sweep points within ``remove_close`` m of their sensor (a circle in x, y) are dropped; keyframe points are all
    kept. This differs from CMT's configs, which keep every point (mmdet3d's ``LoadPointsFromMultiSweeps`` with its
    ``remove_close``, a square, off); the default stays at 1 m because every zoo run and published number used it.
    ``remove_close=0`` loads as the authors do.

    Returns:
        [P, 5] float32: x, y, z, intensity, time lag (s; 0 for the keyframe).
    """
    key = read_lidar_file(frame.lidar_path).copy()
    key[:, 4] = 0.0
    parts = [key]
    for s in frame.sweeps[:sweeps]:
        pts = read_lidar_file(s.path).copy()
        if remove_close > 0:
            pts = pts[np.hypot(pts[:, 0], pts[:, 1]) >= remove_close]
        pts[:, :3] = pts[:, :3] @ s.sensor2lidar[:3, :3].T.astype(np.float32) + s.sensor2lidar[:3, 3]
        pts[:, 4] = s.time_lag
        parts.append(pts)
    return np.concatenate(parts).astype(np.float32)


def load_images(frame: Frame) -> list[np.ndarray]:
    """The six camera images as [H, W, 3] uint8 **BGR** (the channel order CMT's normalisation expects)."""
    return [read_camera_image(frame.cams[name]) for name in CAMERAS]


def read_camera_image(cam: Camera) -> np.ndarray:
    """One camera's image as [H, W, 3] uint8 BGR; a `ZooError` naming the file when it is missing, not an image,
    a truncated JPEG, or of another size than the one its intrinsics are for (``cam.size``, where known)."""
    cv2 = require("cv2", "det3d")

    path = cam.path
    if not path.is_file():
        raise ZooError(f"camera image {path} does not exist: check the dataroot (or data_root of the info file)")
    data = path.read_bytes()
    # a JPEG ends with the end-of-image marker FF D9 (some writers add up to a few KiB after it); entropy-coded
    # data cannot hold it (an FF byte there is followed by 00 or a restart marker), so a tail without it is a
    # cut-off file, which OpenCV would decode with its missing rows grey and only a warning
    if data[:2] == b"\xff\xd8" and data.find(b"\xff\xd9", len(data) - 4096) < 0:
        raise ZooError(f"camera image {path} is a truncated JPEG (no end-of-image marker): restore the file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise ZooError(f"cannot read camera image {path}: not an image")
    if cam.size is not None and (img.shape[1], img.shape[0]) != tuple(cam.size):
        raise ZooError(f"camera image {path} is {img.shape[1]}x{img.shape[0]} but its sample_data record says "
                       f"{cam.size[0]}x{cam.size[1]}, the size its camera intrinsics are for: use the images at "
                       f"their recorded size (a resized copy needs its calibrated_sensor intrinsics and sample_data "
                       f"width/height rescaled too)")
    return img


# --------------------------------------------------------------------------------------------------------------
# Geometry


def box_corners(boxes: np.ndarray, lidar2world: np.ndarray | None = None) -> np.ndarray:
    """[N, 7] gravity-centre boxes -> [N, 8, 3] corners in the LiDAR frame (the devkit's ``Box.corners`` set).

    nuScenes annotations are upright in the *global* frame (their quaternions are pure yaw there), so in the LiDAR
    frame they are tilted by the ego's pitch and roll. With ``lidar2world`` ([4, 4], e.g. ego2global @ lidar2ego)
    the corners are built upright in that frame, which reproduces the devkit's boxes exactly; without it they are
    upright in the LiDAR frame (the 7-DoF box of mmdet3d).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    centers, yaw = boxes[:, :3], boxes[:, 6]
    if lidar2world is not None:
        rot = lidar2world[:3, :3]
        centers = centers @ rot.T + lidar2world[:3, 3]
        heading = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1) @ rot.T
        yaw = np.arctan2(heading[:, 1], heading[:, 0])
    sign = np.array([[1, 1, 1], [1, -1, 1], [1, -1, -1], [1, 1, -1],
                     [-1, 1, 1], [-1, -1, 1], [-1, -1, -1], [-1, 1, -1]], np.float64)
    local = sign[None] * boxes[:, None, 3:6] / 2
    c, s = np.cos(yaw), np.sin(yaw)
    x = c[:, None] * local[..., 0] - s[:, None] * local[..., 1]
    y = s[:, None] * local[..., 0] + c[:, None] * local[..., 1]
    corners = np.stack([x, y, local[..., 2]], -1) + centers[:, None]
    if lidar2world is not None:
        world2lidar = np.linalg.inv(lidar2world)
        corners = corners @ world2lidar[:3, :3].T + world2lidar[:3, 3]
    return corners


def project_points(points: np.ndarray, lidar2img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LiDAR-frame points [..., 3] -> pixels [..., 2] (u, v) and depths [...] (third row of the projection: the
    camera-frame z).

    ``lidar2img`` is [4, 4], or [..., 4, 4] whose leading dims broadcast against those of the points but the last
    (e.g. [N, 1, 4, 4] with points [n, k, 3] gives [N, n, k]). Pixels are NaN where the depth is not positive;
    what counts as visible (every corner in front, a margin, the image bounds) is the caller's rule.
    """
    points = np.asarray(points, np.float64)
    hom = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    proj = hom @ np.swapaxes(np.asarray(lidar2img, np.float64), -1, -2)
    depth = proj[..., 2]
    return proj[..., :2] / np.where(depth > 0, depth, np.nan)[..., None], depth


def camera_instances(frame: Frame, image_size=(1600, 900)) -> dict[str, list[dict]]:
    """Project ``frame.boxes`` into every camera as mmdet3d's converter builds ``cam_instances``.

    A box appears in a camera when its centre has positive depth and the convex hull of its corners in front of
    the camera overlaps the image. ``bbox`` is that hull clipped to the image (x1, y1, x2, y2); ``center_2d`` the
    projected gravity centre; ``depth`` its camera-frame z. Each entry also holds ``index`` (the box's row).
    """
    geometry = require("shapely.geometry", "det3d")

    w, h = image_size
    canvas = geometry.box(0, 0, w, h)
    corners = box_corners(frame.boxes, frame.ego2global @ frame.lidar2ego)
    out = {}
    for name in CAMERAS:
        uv, depth = project_points(corners, frame.cams[name].lidar2img)  # [n, 8, 2], [n, 8]
        center_uv, center_depth = project_points(frame.boxes[:, :3], frame.cams[name].lidar2img)
        rows = []
        for i in range(len(frame.boxes)):
            front = uv[i][depth[i] > 0]
            if len(front) == 0:
                continue
            hull = geometry.MultiPoint([tuple(p) for p in front]).convex_hull
            if not hull.intersects(canvas):
                continue
            inter = hull.intersection(canvas)
            if inter.is_empty or inter.geom_type not in ("Polygon", "LineString", "Point", "MultiPoint"):
                continue
            xs, ys = np.asarray(inter.exterior.coords if inter.geom_type == "Polygon" else inter.coords).T[:2]
            if center_depth[i] <= 0:
                continue
            rows.append({"index": i, "bbox": [xs.min(), ys.min(), xs.max(), ys.max()],
                         "center_2d": center_uv[i].tolist(), "depth": float(center_depth[i])})
        out[name] = rows
    return out


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which points lie in which 7-DoF boxes (upright in the LiDAR frame; faces included, as the devkit's
    ``points_in_box``). Each box tests only the points within its bounding square, so a full nuScenes cloud
    (~300 000 points with ten sweeps) costs a few milliseconds per box.

    Args:
        points: [P, >=3] (x, y, z first); boxes: [n, 7] gravity centre, l, w, h, yaw.
    Returns:
        [P, n] bool.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    xyz = np.asarray(points)[:, :3]
    out = np.zeros((len(xyz), len(boxes)), bool)
    for i, (cx, cy, cz, length, width, height, yaw) in enumerate(boxes):
        reach = np.hypot(length, width) / 2
        near = np.flatnonzero((np.abs(xyz[:, 0] - cx) <= reach) & (np.abs(xyz[:, 1] - cy) <= reach))
        d = xyz[near].astype(np.float64) - (cx, cy, cz)
        c, s = np.cos(yaw), np.sin(yaw)
        out[near, i] = ((np.abs(d[:, 0] * c + d[:, 1] * s) <= length / 2)  # along the heading
                        & (np.abs(-d[:, 0] * s + d[:, 1] * c) <= width / 2) & (np.abs(d[:, 2]) <= height / 2))
    return out


def bev_overlaps(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Whether the bird's-eye-view rectangles of two box sets overlap (separating-axis test; touching edges do
    not count), as the collision test of GT-paste needs.

    Args:
        boxes_a: [n, 7], boxes_b: [m, 7] (x, y, z, l, w, h, yaw; only x, y, l, w, yaw are read).
    Returns:
        [n, m] bool.
    """
    def rect(b):
        corners = box_corners(b)[:, [0, 1, 5, 4], :2]  # [k, 4, 2]: the top face, in order around it
        return corners, corners[:, 1:3] - corners[:, 0:2]  # and its two edge directions [k, 2, 2] (the axes)

    ca, aa = rect(boxes_a)
    cb, ab = rect(boxes_b)
    n, m = len(ca), len(cb)
    axes = np.concatenate([np.broadcast_to(aa[:, None], (n, m, 2, 2)), np.broadcast_to(ab[None], (n, m, 2, 2))], 2)
    pa = np.einsum("nkd,nmad->nmak", ca, axes)  # [n, m, 4 axes, 4 corners]: a's corners on each axis
    pb = np.einsum("mkd,nmad->nmak", cb, axes)
    separated = (pa.max(-1) <= pb.min(-1)) | (pb.max(-1) <= pa.min(-1))  # [n, m, 4]
    return ~separated.any(-1)
