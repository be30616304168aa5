"""Synthetic driving scenes written as a nuScenes dataroot that the official devkit loads and evaluates.

Each scene: an ego vehicle driving straight at constant speed over a flat ground plane, with cuboid objects of
the ten detection classes (each class at least once when a scene has ten objects or more, the rest drawn by a
nuScenes-like frequency; class-typical sizes, colours and LiDAR reflectivity; vehicles, cyclists and
pedestrians move at constant velocity). For every keyframe (2 Hz, as nuScenes) and for ``sweeps_per_sample``
LiDAR sweeps before it (20 Hz), a 32-beam spinning LiDAR is ray-cast against the ground and the cuboids; the six
cameras (nuScenes rig: positions, headings, fields of view) render the same cuboids with flat shading over a
chequered ground. The tables (scene, sample, sample_data, ego_pose, calibrated_sensor, sample_annotation with
prev/next links so the devkit derives velocities, instance, category, attribute, ...) follow the nuScenes
schema; ``splits.json`` declares the custom splits ``synthetic_train`` and ``synthetic_val`` (devkit >= 1.2).

`synthetic_nuscenes(...)` writes one dataroot per parameter set into the cache (once, atomically) and returns it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import ZooError, require
from ..hub import cache_dir
from ..io import write_dir_once

VERSION = "v1.0-synthetic"
GENERATOR = 2  # part of the cache key: bump when the generated data changes
SPLITS = ("synthetic_train", "synthetic_val")

# class: (nuScenes category, mean l, w, h in m, RGB colour, LiDAR intensity, relative frequency, max distance m)
CLASS_SPECS = {
    "car": ("vehicle.car", (4.6, 1.95, 1.7), (200, 40, 40), 40.0, 5, 30),
    "truck": ("vehicle.truck", (6.9, 2.5, 2.8), (40, 90, 200), 35.0, 2, 30),
    "construction_vehicle": ("vehicle.construction", (6.4, 2.8, 3.2), (230, 200, 30), 45.0, 1, 30),
    "bus": ("vehicle.bus.rigid", (11.0, 2.9, 3.5), (240, 130, 20), 30.0, 1, 30),
    "trailer": ("vehicle.trailer", (12.0, 2.9, 3.8), (120, 120, 130), 25.0, 1, 30),
    "barrier": ("movable_object.barrier", (0.5, 2.5, 1.0), (235, 235, 235), 70.0, 2, 26),
    "motorcycle": ("vehicle.motorcycle", (2.1, 0.8, 1.5), (150, 40, 170), 50.0, 2, 26),
    "bicycle": ("vehicle.bicycle", (1.7, 0.6, 1.3), (40, 200, 200), 55.0, 2, 26),
    "pedestrian": ("human.pedestrian.adult", (0.73, 0.67, 1.77), (40, 170, 40), 15.0, 4, 26),
    "traffic_cone": ("movable_object.trafficcone", (0.41, 0.41, 1.07), (255, 110, 0), 80.0, 2, 26),
}
MOVERS = {"car": (0.5, 2.0, 9.0), "truck": (0.5, 2.0, 8.0), "bus": (0.5, 2.0, 7.0), "trailer": (0.3, 2.0, 6.0),
          "construction_vehicle": (0.3, 1.0, 3.0), "motorcycle": (0.7, 2.0, 7.0), "bicycle": (0.7, 1.5, 5.0),
          "pedestrian": (0.7, 0.5, 1.8)}  # class: (probability of moving, min speed, max speed)
ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving")

# Sensor rig (ego frame: x forward, y left, z up), after the nuScenes vehicle: position, heading (deg), focal
# length as a fraction of the image width (1266/1600 for the front cameras, 809/1600 for the back camera).
LIDAR_POSE = ((0.943, 0.0, 1.84), -90.0)
CAMERA_RIG = {
    "CAM_FRONT": ((1.70, 0.02, 1.51), 0.0, 0.79),
    "CAM_FRONT_RIGHT": ((1.55, -0.49, 1.50), -55.0, 0.79),
    "CAM_FRONT_LEFT": ((1.52, 0.49, 1.51), 55.0, 0.79),
    "CAM_BACK": ((0.03, 0.0, 1.57), 180.0, 0.506),
    "CAM_BACK_LEFT": ((1.04, 0.48, 1.56), 110.0, 0.79),
    "CAM_BACK_RIGHT": ((1.04, -0.48, 1.56), -110.0, 0.79),
}
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
KEYFRAME_DT, SWEEP_DT, MAX_RANGE = 0.5, 0.05, 70.0


def synthetic_nuscenes(n_scenes: int = 4, samples_per_scene: int = 6, sweeps_per_sample: int = 2,
                       image_size: tuple[int, int] = (400, 225), objects: tuple[int, int] = (10, 18),
                       val_scenes: int = 1, azimuth_step: float = 0.6, seed: int = 0,
                       dest: str | Path | None = None) -> Path:
    """Write (once) and return a synthetic nuScenes dataroot (version ``v1.0-synthetic``).

    Args:
        n_scenes: scenes; the last ``val_scenes`` form ``synthetic_val``, the others ``synthetic_train``.
        samples_per_scene: keyframes per scene (0.5 s apart).
        sweeps_per_sample: LiDAR sweeps (0.05 s apart) written before each keyframe.
        image_size: camera image (width, height).
        objects: (min, max) objects per scene.
        azimuth_step: LiDAR horizontal resolution in degrees (32 beams, -30.7 to +10.7 degrees).
        dest: where to write (default: a folder in the cache named by the parameters). An existing ``dest`` is
            used only when it was made with these parameters (its ``synthetic.json`` says so).
    """
    params = dict(n_scenes=n_scenes, samples_per_scene=samples_per_scene, sweeps_per_sample=sweeps_per_sample,
                  image_size=list(image_size), objects=list(objects), val_scenes=val_scenes,
                  azimuth_step=azimuth_step, seed=seed)
    made_with = {**params, "generator": GENERATOR}
    key = hashlib.sha256(json.dumps(made_with, sort_keys=True).encode()).hexdigest()[:10]
    root = Path(dest) if dest else cache_dir() / "data" / f"nuscenes-synthetic-{key}"

    def fill(tmp: Path) -> None:
        _Writer(tmp, **params).write()
        (tmp / STAMP).write_text(json.dumps(made_with, sort_keys=True))

    write_dir_once(root, fill)
    if dest:  # the default folder's name already holds the parameters
        _check_made_with(root, made_with)
    return root


STAMP = "synthetic.json"  # the parameters a dataroot was made with


def _check_made_with(root: Path, made_with: dict) -> None:
    """Refuse a dataroot ``root`` made with other parameters than ``made_with`` (or not by `synthetic_nuscenes`)."""
    try:
        found = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        raise ZooError(f"synthetic_nuscenes dest {root} exists but has no readable {STAMP} (the parameters it "
                       f"was made with): it is not a synthetic dataroot of this zoo version; give another dest or "
                       f"delete it") from None
    if found != made_with:
        diff = ", ".join(f"{k} {found.get(k)!r} (asked {v!r})" for k, v in made_with.items() if found.get(k) != v)
        raise ZooError(f"synthetic_nuscenes dest {root} was made with other parameters: {diff}; give another dest "
                       f"or delete it")


def _token(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def _yaw_quat(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _pose(translation, yaw) -> np.ndarray:
    m = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = translation
    return m


_CAM_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # camera x/y/z in ego axes (heading 0)


def camera_to_ego(name: str) -> np.ndarray:
    """[4, 4] camera -> ego transform of the synthetic rig (camera: x right, y down, z forward)."""
    pos, heading, _ = CAMERA_RIG[name]
    m = _pose(pos, np.deg2rad(heading))
    m[:3, :3] = m[:3, :3] @ _CAM_AXES
    return m


def camera_intrinsics(name: str, image_size) -> np.ndarray:
    w, h = image_size
    f = CAMERA_RIG[name][2] * w
    return np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])


def _quat_of(m: np.ndarray) -> list[float]:
    Quaternion = require("pyquaternion", "det3d").Quaternion

    return list(map(float, Quaternion(matrix=m[:3, :3], atol=1e-6).elements))


class _Scene:
    """Ego trajectory and objects of one scene; object states at any time t (s from the scene start)."""

    def __init__(self, rng: np.random.Generator, n_objects: int, duration: float):
        self.ego_start = rng.uniform(-300, 300, 2)
        self.ego_yaw = rng.uniform(-np.pi, np.pi)
        self.ego_speed = rng.uniform(0.0, 8.0)
        names = list(CLASS_SPECS)
        freq = np.array([CLASS_SPECS[n][4] for n in names], float)
        self.objects = []
        wanted = [str(n) for n in rng.permutation(names)] if n_objects >= len(names) else []  # every class once, then by frequency
        for _ in range(n_objects * 20):
            if len(self.objects) == n_objects:
                break
            name = wanted[0] if wanted else names[rng.choice(len(names), p=freq / freq.sum())]
            _, size, color, intensity, _, max_dist = CLASS_SPECS[name]
            lwh = np.array(size) * rng.uniform(0.9, 1.1, 3)
            dist, bearing = rng.uniform(4.0, max_dist), rng.uniform(-np.pi, np.pi)
            local = np.array([np.cos(bearing), np.sin(bearing)]) * dist  # in the ego frame at t=0
            along = self.ego_speed * duration
            if -10 < local[0] < along + 10 and abs(local[1]) < 3.0 + lwh[1] / 2:
                continue  # keep the ego's lane free
            radius = np.hypot(lwh[0], lwh[1]) / 2
            if any(np.hypot(*(local - o["local"])) < radius + o["radius"] + 0.5 for o in self.objects):
                continue
            yaw = rng.uniform(-np.pi, np.pi)
            p_move, v_min, v_max = MOVERS.get(name, (0.0, 0.0, 0.0))
            speed = rng.uniform(v_min, v_max) if rng.random() < p_move else 0.0
            rgb = np.clip(np.array(color) + rng.integers(-25, 26, 3), 0, 255)
            if wanted:
                wanted.pop(0)
            self.objects.append({"name": name, "lwh": lwh, "local": local, "radius": radius, "yaw": yaw,
                                 "speed": speed, "color": rgb, "intensity": intensity})
        ego0 = self.ego2global(0.0)
        for o in self.objects:
            world_yaw = self.ego_yaw + o["yaw"]
            o["start"] = (ego0 @ np.r_[o["local"], 0.0, 1.0])[:2]
            o["world_yaw"] = world_yaw
            o["velocity"] = o["speed"] * np.array([np.cos(world_yaw), np.sin(world_yaw)])

    def ego2global(self, t: float) -> np.ndarray:
        d = np.array([np.cos(self.ego_yaw), np.sin(self.ego_yaw)])
        return _pose([*(self.ego_start + d * self.ego_speed * t), 0.0], self.ego_yaw)

    def boxes(self, t: float) -> np.ndarray:
        """[N, 7] global boxes at time t: x, y, z (gravity centre), l, w, h, yaw."""
        return np.array([[*(o["start"] + o["velocity"] * t), o["lwh"][2] / 2, *o["lwh"], o["world_yaw"]]
                         for o in self.objects]).reshape(-1, 7)


def ray_cast(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays with the ground plane z = 0 and upright cuboids.

    Args:
        origin: [3] ray origin; dirs: [R, 3] unit directions; boxes: [N, 7] (gravity centre, l, w, h, yaw).
    Returns:
        (distance [R], inf where nothing is hit within `MAX_RANGE`; hit id [R]: -1 ground, i for box i).
    """
    dist = np.full(len(dirs), np.inf)
    hit = np.full(len(dirs), -2, np.int64)
    down = dirs[:, 2] < -1e-6
    t_ground = np.where(down, -origin[2] / np.where(down, dirs[:, 2], -1.0), np.inf)
    dist, hit = np.where(t_ground < dist, t_ground, dist), np.where(t_ground < dist, -1, hit)
    for i, b in enumerate(boxes):
        c, s = np.cos(b[6]), np.sin(b[6])
        rot_t = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> box axes
        o = rot_t @ (origin - b[:3])
        d = dirs @ rot_t.T
        half = b[3:6] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / d, (half - o) / d
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        ok = (t_far >= np.maximum(t_near, 0.0)) & (t_near > 0) & (t_near < dist)
        dist[ok], hit[ok] = t_near[ok], i
    dist[(dist > MAX_RANGE) | (hit == -2)] = np.inf
    return dist, hit


def _clip_near(poly: np.ndarray, near: float = 0.1) -> np.ndarray:
    """Clip a camera-frame polygon [K, 3] to z >= near (Sutherland-Hodgman against one plane)."""
    out = []
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            out.append(a + (b - a) * (near - a[2]) / (b[2] - a[2]))
    return np.array(out).reshape(-1, 3)


_FACES = ((0, 1, 2, 3), (4, 7, 6, 5), (0, 4, 5, 1), (3, 2, 6, 7), (0, 3, 7, 4), (1, 5, 6, 2))
_LIGHT = np.array([0.4, 0.3, 0.87])


def render_camera(boxes: np.ndarray, colors: np.ndarray, cam2global: np.ndarray, intrinsics: np.ndarray,
                  image_size, rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] uint8 RGB: sky, chequered ground, and flat-shaded cuboids (painter's order, back faces culled)."""
    from PIL import Image, ImageDraw

    from .nuscenes import box_corners

    w, h = image_size
    global2cam = np.linalg.inv(cam2global)
    v, u = np.mgrid[0:h, 0:w] + 0.5
    rays = np.stack([(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1],
                     np.ones_like(u)], -1) @ cam2global[:3, :3].T
    origin = cam2global[:3, 3]
    ground = rays[..., 2] < -1e-4
    t = np.where(ground, -origin[2] / np.where(ground, rays[..., 2], -1.0), 0.0)
    gx, gy = origin[0] + t * rays[..., 0], origin[1] + t * rays[..., 1]
    checker = ((np.floor(gx / 4) + np.floor(gy / 4)) % 2)[..., None]
    fade = np.exp(-t / 60.0)[..., None]
    ground_rgb = (np.array([95, 95, 90]) + 25 * checker) * fade + np.array([150, 160, 170]) * (1 - fade)
    sky = np.array([120, 170, 230]) + (v / h)[..., None] * np.array([60, 40, 10])
    img = np.where(ground[..., None], ground_rgb, sky)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    faces = []
    corners = box_corners(boxes)  # boxes are upright in the global frame here
    for corner, color in zip(corners, colors):
        cam = np.c_[corner, np.ones(8)] @ global2cam.T
        for f in _FACES:
            quad_world = corner[list(f)]
            normal = np.cross(quad_world[1] - quad_world[0], quad_world[3] - quad_world[0])
            normal /= np.linalg.norm(normal) + 1e-9
            if normal @ (quad_world.mean(0) - origin) >= 0:
                continue
            poly = _clip_near(cam[list(f), :3])
            if len(poly) < 3:
                continue
            shade = 0.5 + 0.5 * abs(normal @ _LIGHT)
            uv = poly @ intrinsics.T
            uv = uv[:, :2] / uv[:, 2:3]
            faces.append((poly[:, 2].mean(), [tuple(p) for p in uv], tuple(int(c * shade) for c in color)))
    for _, uv, color in sorted(faces, key=lambda f: -f[0]):
        draw.polygon(uv, fill=color)
    out = np.asarray(canvas, dtype=np.float64) + rng.normal(0, 3.0, (h, w, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


class _Writer:
    def __init__(self, root: Path, n_scenes, samples_per_scene, sweeps_per_sample, image_size, objects, val_scenes,
                 azimuth_step, seed):
        self.root, self.n_scenes, self.n_samples = Path(root), n_scenes, samples_per_scene
        self.n_sweeps, self.image_size, self.objects = sweeps_per_sample, tuple(image_size), tuple(objects)
        self.val_scenes, self.seed = val_scenes, seed
        az = np.deg2rad(np.arange(0.0, 360.0, azimuth_step))
        el, az = np.meshgrid(LIDAR_ELEVATIONS, az, indexing="ij")
        self.beam = np.broadcast_to(np.arange(len(LIDAR_ELEVATIONS))[:, None], el.shape).ravel()
        self.lidar_dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
        self.tables = {k: [] for k in ("category", "attribute", "visibility", "instance", "sensor",
                                       "calibrated_sensor", "ego_pose", "log", "scene", "sample", "sample_data",
                                       "sample_annotation", "map")}

    def write(self) -> None:
        t = self.tables
        for name, (category, *_rest) in CLASS_SPECS.items():
            t["category"].append({"token": _token("category", category), "name": category,
                                  "description": f"synthetic {name}"})
        t["attribute"] = [{"token": _token("attribute", a), "name": a, "description": a} for a in ATTRIBUTES]
        t["visibility"] = [{"token": str(i), "level": lvl, "description": lvl}
                           for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), 1)]
        self.lidar2ego = _pose(LIDAR_POSE[0], np.deg2rad(LIDAR_POSE[1]))
        t["sensor"].append({"token": _token("sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"})
        t["calibrated_sensor"].append({"token": _token("calib", "LIDAR_TOP"), "sensor_token": _token("sensor", "LIDAR_TOP"),
                                       "translation": list(LIDAR_POSE[0]), "rotation": _quat_of(self.lidar2ego),
                                       "camera_intrinsic": []})
        for name in CAMERA_RIG:
            t["sensor"].append({"token": _token("sensor", name), "channel": name, "modality": "camera"})
            c2e = camera_to_ego(name)
            t["calibrated_sensor"].append({
                "token": _token("calib", name), "sensor_token": _token("sensor", name),
                "translation": c2e[:3, 3].tolist(), "rotation": _quat_of(c2e),
                "camera_intrinsic": camera_intrinsics(name, self.image_size).tolist()})
        names = [f"synthetic-{i:04d}" for i in range(self.n_scenes)]
        for i, name in enumerate(names):
            self._scene(i, name)
        self._link()
        map_token = _token("map")
        (self.root / "maps").mkdir(parents=True)
        from PIL import Image

        Image.fromarray(np.zeros((8, 8), np.uint8)).save(self.root / "maps" / f"{map_token}.png")
        t["map"].append({"token": map_token, "log_tokens": [r["token"] for r in t["log"]],
                         "category": "semantic_prior", "filename": f"maps/{map_token}.png"})
        tables = self.root / VERSION
        tables.mkdir(parents=True)
        for table, rows in t.items():
            (tables / f"{table}.json").write_text(json.dumps(rows))
        n_val = min(self.val_scenes, self.n_scenes)
        split = {SPLITS[0]: names[: self.n_scenes - n_val], SPLITS[1]: names[self.n_scenes - n_val:]}
        (tables / "splits.json").write_text(json.dumps(split, indent=1))

    def _scene(self, index: int, name: str) -> None:
        t = self.tables
        rng = np.random.default_rng([self.seed, index])
        scene = _Scene(rng, int(rng.integers(self.objects[0], self.objects[1] + 1)), self.n_samples * KEYFRAME_DT)
        log_token, scene_token = _token("log", name), _token("scene", name)
        t["log"].append({"token": log_token, "logfile": name, "vehicle": "synthetic", "date_captured": "2026-01-01",
                         "location": "singapore-onenorth"})
        start_us = 1_700_000_000_000_000 + index * 100_000_000
        sample_tokens = [_token("sample", name, k) for k in range(self.n_samples)]
        instances = [_token("instance", name, j) for j in range(len(scene.objects))]
        prev_lidar, prev_cam = "", {c: "" for c in CAMERA_RIG}
        for k, sample_token in enumerate(sample_tokens):
            t_key = (k + 1) * KEYFRAME_DT
            ts = start_us + int(round(t_key * 1e6))
            t["sample"].append({"token": sample_token, "timestamp": ts, "scene_token": scene_token,
                                "prev": sample_tokens[k - 1] if k else "",
                                "next": sample_tokens[k + 1] if k + 1 < self.n_samples else ""})
            for j in range(self.n_sweeps, 0, -1):
                tok = _token("sweep", name, k, j)
                self._lidar(scene, t_key - j * SWEEP_DT, start_us, tok, sample_token, False, prev_lidar, rng)
                prev_lidar = tok
            tok = _token("lidar", name, k)
            hits = self._lidar(scene, t_key, start_us, tok, sample_token, True, prev_lidar, rng)
            prev_lidar = tok
            for cam in CAMERA_RIG:
                tok = _token("cam", name, cam, k)
                self._camera(scene, t_key, start_us, cam, tok, sample_token, prev_cam[cam], rng)
                prev_cam[cam] = tok
            self._annotations(scene, t_key, sample_token, instances, name, k, hits)
        for j, (o, inst) in enumerate(zip(scene.objects, instances)):
            anns = [_token("ann", name, k, j) for k in range(self.n_samples)]
            t["instance"].append({"token": inst, "category_token": _token("category", CLASS_SPECS[o["name"]][0]),
                                  "nbr_annotations": len(anns), "first_annotation_token": anns[0],
                                  "last_annotation_token": anns[-1]})
        t["scene"].append({"token": scene_token, "log_token": log_token, "nbr_samples": self.n_samples,
                           "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1],
                           "name": name, "description": f"synthetic scene, ego {scene.ego_speed:.1f} m/s"})

    def _link(self) -> None:
        """Fill ``next`` of sample_data rows from their ``prev`` links."""
        by_token = {r["token"]: r for r in self.tables["sample_data"]}
        for r in self.tables["sample_data"]:
            if r["prev"] and not by_token[r["prev"]]["next"]:
                by_token[r["prev"]]["next"] = r["token"]

    def _sample_data(self, token, sample_token, channel, ts, filename, key, prev, ego2global, width=0, height=0):
        self.tables["ego_pose"].append({"token": token, "timestamp": ts, "translation": ego2global[:3, 3].tolist(),
                                        "rotation": _quat_of(ego2global)})
        self.tables["sample_data"].append({
            "token": token, "sample_token": sample_token, "ego_pose_token": token,
            "calibrated_sensor_token": _token("calib", channel), "timestamp": ts,
            "fileformat": filename.rsplit(".", 1)[-1] if channel != "LIDAR_TOP" else "pcd", "is_key_frame": key,
            "height": height, "width": width, "filename": filename, "prev": prev, "next": ""})

    def _lidar(self, scene, t, start_us, token, sample_token, key, prev, rng) -> np.ndarray:
        ts = start_us + int(round(t * 1e6))
        ego2global = scene.ego2global(t)
        sensor2global = ego2global @ self.lidar2ego
        dirs = self.lidar_dirs @ sensor2global[:3, :3].T
        origin = sensor2global[:3, 3]
        dist, hit = ray_cast(origin, dirs, scene.boxes(t))
        keep = np.isfinite(dist) & (rng.random(len(dist)) > 0.03)  # a few dropped returns
        dist = dist[keep] + rng.normal(0, 0.02, keep.sum())
        pts_sensor = self.lidar_dirs[keep] * dist[:, None]
        intensity = np.where(hit[keep] < 0, 4.0, 0.0)
        for i, o in enumerate(scene.objects):
            intensity[hit[keep] == i] = o["intensity"]
        intensity = np.clip(intensity + rng.normal(0, 2.0, len(intensity)), 0, 255)
        pts = np.c_[pts_sensor, intensity, self.beam[keep]].astype(np.float32)
        folder = "samples" if key else "sweeps"
        filename = f"{folder}/LIDAR_TOP/{token}__LIDAR_TOP__{ts}.pcd.bin"
        path = self.root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        pts.tofile(path)
        self._sample_data(token, sample_token, "LIDAR_TOP", ts, filename, key, prev, ego2global)
        return hit[keep]

    def _camera(self, scene, t, start_us, cam, token, sample_token, prev, rng) -> None:
        from PIL import Image

        ts = start_us + int(round(t * 1e6))
        ego2global = scene.ego2global(t)
        img = render_camera(scene.boxes(t), [o["color"] for o in scene.objects], ego2global @ camera_to_ego(cam),
                            camera_intrinsics(cam, self.image_size), self.image_size, rng)
        filename = f"samples/{cam}/{token}__{cam}__{ts}.jpg"
        path = self.root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=90)
        self._sample_data(token, sample_token, cam, ts, filename, True, prev, ego2global, *self.image_size)

    def _annotations(self, scene, t, sample_token, instances, name, k, hits) -> None:
        for j, (o, box, inst) in enumerate(zip(scene.objects, scene.boxes(t), instances)):
            moving = o["speed"] > 0
            if o["name"] in ("barrier", "traffic_cone"):
                attrs = []
            elif o["name"] == "pedestrian":
                attrs = ["pedestrian.moving" if moving else "pedestrian.standing"]
            elif o["name"] in ("bicycle", "motorcycle"):
                attrs = ["cycle.with_rider" if moving else "cycle.without_rider"]
            else:
                attrs = ["vehicle.moving" if moving else "vehicle.parked"]
            self.tables["sample_annotation"].append({
                "token": _token("ann", name, k, j), "sample_token": sample_token, "instance_token": inst,
                "visibility_token": "4", "attribute_tokens": [_token("attribute", a) for a in attrs],
                "translation": box[:3].tolist(), "size": [box[4], box[3], box[5]], "rotation": _yaw_quat(box[6]),
                "prev": _token("ann", name, k - 1, j) if k else "",
                "next": _token("ann", name, k + 1, j) if k + 1 < self.n_samples else "",
                "num_lidar_pts": int((hits == j).sum()), "num_radar_pts": 0})
