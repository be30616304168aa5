"""nuScenes detection metrics through the official devkit: LiDAR-frame boxes -> the submission format ->
``DetectionEval`` with ``detection_cvpr_2019`` (NDS, mAP, the five TP errors, per-class AP).

Box conversion (as mmdet3d's nuScenes formatting, which CMT uses): a LiDAR box (gravity centre, l, w, h, yaw,
vx, vy) becomes a devkit ``Box`` (size w, l, h; yaw about z; velocity (vx, vy, 0)), moved to the ego frame and
then to the global frame. Attributes follow mmdet3d's rule (speed > 0.2 m/s: vehicle.moving / cycle.with_rider;
else pedestrian.standing, bus -> vehicle.stopped; otherwise the class default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ZooError, require
from ..io import write_json

DEFAULT_ATTRIBUTE = {"car": "vehicle.parked", "pedestrian": "pedestrian.moving", "trailer": "vehicle.parked",
                     "truck": "vehicle.parked", "bus": "vehicle.moving", "motorcycle": "cycle.without_rider",
                     "construction_vehicle": "vehicle.parked", "bicycle": "cycle.without_rider", "barrier": "",
                     "traffic_cone": ""}
TP_METRICS = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")
_TP_NAMES = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}


def attribute_for(name: str, velocity) -> str:
    """mmdet3d's attribute rule for a predicted box of class ``name`` with ground velocity (vx, vy)."""
    moving = float(np.hypot(*velocity[:2])) > 0.2
    if moving and name in ("car", "construction_vehicle", "bus", "truck", "trailer"):
        return "vehicle.moving"
    if moving and name in ("bicycle", "motorcycle"):
        return "cycle.with_rider"
    if not moving and name == "pedestrian":
        return "pedestrian.standing"
    if not moving and name == "bus":
        return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[name]


def to_global(boxes: np.ndarray, lidar2ego: np.ndarray, ego2global: np.ndarray) -> list:
    """LiDAR boxes [K, 9] -> devkit ``Box`` objects in the global frame."""
    Box = require("nuscenes.utils.data_classes", "det3d").Box
    Quaternion = require("pyquaternion", "det3d").Quaternion

    out = []
    for b in np.asarray(boxes, np.float64).reshape(-1, 9):
        box = Box(b[:3], [b[4], b[3], b[5]], Quaternion(axis=[0, 0, 1], radians=b[6]), velocity=(b[7], b[8], 0.0))
        for m in (lidar2ego, ego2global):
            box.rotate(Quaternion(matrix=m[:3, :3], atol=1e-5, rtol=1e-5))
            box.translate(m[:3, 3])
        out.append(box)
    return out


def submission_entries(token: str, boxes, scores, names, lidar2ego, ego2global, attributes=None) -> list[dict]:
    """One sample's detections in the nuScenes result format (global frame)."""
    entries = []
    for i, box in enumerate(to_global(boxes, lidar2ego, ego2global)):
        name = names[i]
        entries.append({
            "sample_token": token, "translation": box.center.tolist(), "size": box.wlh.tolist(),
            "rotation": box.orientation.elements.tolist(), "velocity": box.velocity[:2].tolist(),
            "detection_name": name, "detection_score": float(scores[i]),
            "attribute_name": attributes[i] if attributes is not None else attribute_for(name, box.velocity)})
    return entries


def write_submission(path: str | Path, results: dict[str, list[dict]], modalities=("camera", "lidar")) -> Path:
    meta = {"use_camera": "camera" in modalities, "use_lidar": "lidar" in modalities, "use_radar": False,
            "use_map": False, "use_external": False}
    write_json(path, {"meta": meta, "results": results})
    return Path(path)


def detection_config(max_distance: float | None = None):
    """The devkit's ``detection_cvpr_2019`` config; ``max_distance`` (m) caps its per-class ranges
    (``class_range``: 30-50 m from the ego), so that ground truth and predictions farther than that are left out on
    both sides, as the devkit leaves out those beyond the class ranges. None keeps the benchmark's ranges."""
    require("nuscenes", "det3d")
    from nuscenes.eval.common.config import config_factory

    cfg = config_factory("detection_cvpr_2019")
    if max_distance is not None:
        if not max_distance > 0:
            raise ZooError(f"max_distance must be a positive distance in metres, got {max_distance}")
        cfg.class_range = {name: min(r, max_distance) for name, r in cfg.class_range.items()}
    return cfg


def evaluate_submission(nusc, result_path: str | Path, split: str, out_dir: str | Path,
                        max_distance: float | None = None) -> dict:
    """Score a result file with the devkit's ``DetectionEval`` (``detection_cvpr_2019``, with the class ranges
    capped at ``max_distance``: `detection_config`).

    A submission without a single box (an untrained model, a score filter that kept nothing) is a legitimate
    result, but the devkit's box filter cannot tell the box type of an empty set and raises; it is scored here
    the way ``DetectionEval.evaluate`` scores a class without predictions (``DetectionMetricData.no_predictions``
    for every class: AP 0, TP errors 1, so mAP 0 and NDS 0), after the same sample-token check.

    Returns:
        ``{"NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE", "per_class": {name: {"AP", "ATE", ...}},
        "eval_time_s", "n_boxes"}`` with the devkit's numbers (NaN TP errors, for classes absent from the split or
        without the attribute, as None).
    """
    cfg = detection_config(max_distance)
    from nuscenes.eval.detection.evaluate import DetectionEval

    results = _read_results(result_path)
    n_boxes = sum(len(v) for v in results.values())
    if n_boxes == 0:
        _check_tokens(nusc, results, split, result_path)
        metrics = _no_prediction_metrics(cfg)
    else:
        try:
            evaluator = DetectionEval(nusc, cfg, str(result_path), split, str(out_dir), verbose=False)
        except AssertionError as exc:
            raise ZooError(f"the devkit rejected {result_path} for split {split!r}: {exc}") from None
        metrics, _ = evaluator.evaluate()
    m = metrics.serialize()
    tp = m["tp_errors"]
    per_class = {}
    for name, ap in m["mean_dist_aps"].items():
        errs = m["label_tp_errors"][name]
        per_class[name] = {"AP": ap, **{short: _num(errs.get(key)) for key, short in _TP_NAMES.items()}}
    result = {"NDS": m["nd_score"], "mAP": m["mean_ap"], "mATE": tp["trans_err"], "mASE": tp["scale_err"],
              "mAOE": tp["orient_err"], "mAVE": tp["vel_err"], "mAAE": tp["attr_err"], "per_class": per_class,
              "eval_time_s": m["eval_time"], "n_boxes": n_boxes}
    write_json(Path(out_dir) / "metrics_summary.json", m)
    return result


def _read_results(path: str | Path) -> dict:
    import json

    try:
        results = json.loads(Path(path).read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"{path} is not a nuScenes result file ({exc}); it needs {{'meta': ..., 'results': "
                       f"{{sample_token: [box, ...]}}}}") from None
    if not isinstance(results, dict):
        raise ZooError(f"{path}: 'results' must map sample tokens to lists of boxes")
    return results


def _check_tokens(nusc, results: dict, split: str, path) -> None:
    """The devkit's own check: the submission covers exactly the samples of ``split``."""
    from ..data.nuscenes import split_scenes

    scenes = set(split_scenes(nusc, split))
    wanted = {s["token"] for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in scenes}
    if set(results) != wanted:
        raise ZooError(f"the devkit rejected {path} for split {split!r}: Samples in split doesn't match samples in "
                       f"predictions ({len(results)} submitted, {len(wanted)} in the split)")


def _no_prediction_metrics(cfg):
    """``DetectionEval.evaluate`` for a submission without boxes: ``accumulate`` gives
    ``DetectionMetricData.no_predictions()`` for every class and distance; the NaN rules are the devkit's."""
    from nuscenes.eval.detection.algo import calc_ap, calc_tp
    from nuscenes.eval.detection.constants import TP_METRICS as DEVKIT_TP
    from nuscenes.eval.detection.data_classes import DetectionMetricData, DetectionMetrics

    metrics = DetectionMetrics(cfg)
    empty = DetectionMetricData.no_predictions()
    for name in cfg.class_names:
        for dist_th in cfg.dist_ths:
            metrics.add_label_ap(name, dist_th, calc_ap(empty, cfg.min_recall, cfg.min_precision))
        for metric in DEVKIT_TP:
            undefined = (name == "traffic_cone" and metric in ("attr_err", "vel_err", "orient_err")) or \
                (name == "barrier" and metric in ("attr_err", "vel_err"))
            metrics.add_label_tp(name, metric, np.nan if undefined else calc_tp(empty, cfg.min_recall, metric))
    metrics.add_runtime(0.0)
    return metrics


def _num(v):
    return None if v is None or not np.isfinite(v) else float(v)
