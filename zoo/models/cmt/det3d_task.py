"""``zoo eval MODEL --task det3d --data DATAROOT``: nuScenes detection scored by the official devkit.

Every keyframe of ``--split`` goes through the test pipeline (resize to the model's input size, bottom crop; no 3D
augmentation), the model's top-300 boxes become a nuScenes result file (global frame, mmdet3d's attribute rule),
and ``DetectionEval`` with ``detection_cvpr_2019`` scores it. ``--drop-modality lidar|camera`` zeroes that input
(the authors' robustness protocol: points multiplied by 0, images by 0 before normalisation);
``--max-distance M`` scores only boxes within M m of the ego. JSON::

    {"dataroot", "version", "split", "n_samples", "n_boxes", "drop_modality", "max_distance", "sweeps", "NDS",
     "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE", "per_class": {class: {"AP", "ATE", "ASE", "AOE", "AVE", "AAE"}},
     "results_file"}

A model that submits no box at all (untrained, or every box outside the range) scores mAP 0 and NDS 0.

Beside it, named after the JSON (``x.json``: ``x_bev.png``; without ``--json``: ``det3d_bev.png``), so that
evaluations writing into one folder keep their own files: ``x_results_nusc.json`` (the submission), ``x_devkit/``
(the devkit's output), ``x_bev.png`` (the first frame's detections with score >= 0.3 over its ground truth and
points) and ``x_cameras.png`` (the same detections projected into its six cameras).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ...data.catalog import catalog
from ...data.nuscenes import ARCHIVE_SUFFIXES, CLASSES, load_points
from ...argtypes import non_negative_int, unit_interval
from ...errors import ZooError
from ...eval.base import EvalTask
from ...metrics.det3d import TP_METRICS, detection_config, evaluate_submission, submission_entries, write_submission
from .dataset import CMTDataset, collate, open_frames


class Det3DTask(EvalTask):
    name = "det3d"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--data", required=True, help="nuScenes dataroot (the devkit's tables and sensor files), "
                                                          "or a .tar.gz of one (unpacked once into the cache)")
        parser.add_argument("--version", default="v1.0-mini", help="v1.0-mini, v1.0-trainval, v1.0-synthetic...")
        parser.add_argument("--split", default="mini_val",
                            help="mini_val, val, or a custom split of <dataroot>/<version>/splits.json")
        parser.add_argument("--drop-modality", choices=["lidar", "camera"], default=None,
                            help="zero the LiDAR points or the camera images (robustness protocol)")
        parser.add_argument("--sweeps", type=non_negative_int, default=None,
                            help="previous LiDAR sweeps to accumulate (default: the model's, 10 for nuScenes)")
        parser.add_argument("--max-distance", type=float, default=None,
                            help="score only boxes within this many metres of the ego (caps the devkit's class "
                                 "ranges of 30-50 m); default: the benchmark's ranges")
        parser.add_argument("--score-threshold", type=unit_interval, default=0.3, help="for the plots only")

    def setup(self, model, ctx) -> None:
        if not hasattr(model, "predict") or not hasattr(model, "modalities"):
            raise ZooError(f"{type(model).__name__} is not a CMT model: the det3d task needs a model from "
                           f"`zoo list cmt*`")
        super().setup(model, ctx)
        o = self.options
        data = Path(o.data)
        if not (data.is_dir() or data.is_file() and data.name.endswith(ARCHIVE_SUFFIXES)):
            why = ("an info pickle alone cannot be scored by the devkit" if data.suffix == ".pkl" or o.data in catalog()
                   else "it does not exist" if not data.exists() else "it is neither a folder nor a .tar.gz archive")
            raise ZooError(f"--data {o.data}: det3d needs a nuScenes dataroot folder (tables under "
                           f"<dataroot>/{o.version}) or a .tar.gz of one; {why}")
        detection_config(o.max_distance)  # a bad --max-distance fails here, before the inference
        if o.drop_modality and o.drop_modality not in model.modalities:
            raise ZooError(f"--drop-modality {o.drop_modality}: the model does not use it (modalities "
                           f"{list(model.modalities)})")
        if o.drop_modality and len(model.modalities) == 1:
            raise ZooError(f"--drop-modality {o.drop_modality}: it is the model's only input, so nothing would be "
                           f"left to detect from; drop a modality of a fusion model (cmt_fusion_*, cmt_tiny)")
        sweeps = o.sweeps if o.sweeps is not None else model.input_spec.get("sweeps", 10)
        self.frames, source = open_frames(o.data, o.version, o.split, sweeps)
        if not any(len(f.boxes) for f in self.frames):  # the devkit's ground-truth loader fails on an empty set
            raise ZooError(f"split {o.split!r} of {o.data} ({o.version}) has no annotated box of the ten detection "
                           f"classes: there is nothing to score against (the nuScenes test split is not annotated; "
                           f"its results go to the evaluation server)")
        self.nusc = source["nusc"]
        ds = CMTDataset(self.frames, False, model.pc_range, model.input_spec["image_size"], sweeps=sweeps,
                        modalities=model.modalities, drop_modality=o.drop_modality)
        self.loader = DataLoader(ds, batch_size=min(ctx.batch_size, 4), num_workers=ctx.num_workers,
                                 collate_fn=collate)
        self.sweeps = sweeps
        model.eval().to(ctx.device)

    def inputs(self):
        yield self.options.split, self.loader

    def score(self, batch):
        dev = self.ctx.device
        images = batch["images"].to(dev) if "images" in batch else None
        l2i = batch["lidar2img"].to(dev) if "lidar2img" in batch else None
        preds = self.model.predict(images, [p.to(dev) for p in batch["points"]], l2i)
        k = self.model.max_num
        boxes = torch.zeros(len(preds), k, 9)
        scores = torch.full((len(preds), k), -1.0)
        labels = torch.full((len(preds), k), -1)
        for i, p in enumerate(preds):
            n = len(p["scores"])
            boxes[i, :n], scores[i, :n], labels[i, :n] = p["boxes"].float().cpu(), p["scores"].float().cpu(), \
                p["labels"].cpu()
        return {"index": batch["index"], "boxes": boxes, "scores": scores, "labels": labels}

    def finalize(self, scores):
        s = scores[self.options.split]
        self.results = {}
        for index, boxes, sc, lab in zip(s["index"].astype(int), s["boxes"], s["scores"], s["labels"].astype(int)):
            keep = sc >= 0
            f = self.frames[index]
            self.results[f.token] = submission_entries(f.token, boxes[keep], sc[keep], [CLASSES[i] for i in lab[keep]],
                                                       f.lidar2ego, f.ego2global)
        self.predictions = s
        out = self.ctx.out_dir
        work = Path(out) if out else Path(tempfile.mkdtemp(prefix="zoo-det3d-"))
        used = [m for m in self.model.modalities if m != self.options.drop_modality]
        stem = self.ctx.artifact_stem("det3d")
        path = write_submission(work / f"{stem}_results_nusc.json", self.results, used)
        metrics = evaluate_submission(self.nusc, path, self.options.split, work / f"{stem}_devkit",
                                      self.options.max_distance)
        return {"dataroot": str(self.options.data), "version": self.options.version, "split": self.options.split,
                "n_samples": len(self.results), "drop_modality": self.options.drop_modality,
                "max_distance": self.options.max_distance, "sweeps": self.sweeps, **metrics,
                "results_file": str(path)}

    def table(self, r) -> str:
        head = (f"nuScenes detection ({r['version']} {r['split']}, {r['n_samples']} samples"
                f"{', ' + r['drop_modality'] + ' dropped' if r['drop_modality'] else ''}, {r['n_boxes']} boxes): "
                f"NDS {r['NDS']:.4f}  mAP {r['mAP']:.4f}  " + "  ".join(f"{k} {r[k]:.4f}" for k in TP_METRICS))
        rows = [f"{'class':<22}{'AP':>8}{'ATE':>8}{'ASE':>8}{'AOE':>8}{'AVE':>8}{'AAE':>8}"]
        for name, m in r["per_class"].items():
            rows.append(f"{name:<22}{m['AP']:8.4f}" + "".join(f"{m[k]:8.3f}" if m[k] is not None else f"{'-':>8}"
                                                             for k in ("ATE", "ASE", "AOE", "AVE", "AAE")))
        return "\n".join([head, *rows])

    def artifacts(self, result, scores, out_dir):
        from .visualize import plot_bev, plot_cameras

        s = self.predictions
        first = int(np.argmin(s["index"]))
        frame = self.frames[int(s["index"][first])]
        keep = s["scores"][first] >= self.options.score_threshold
        det = s["boxes"][first][keep]
        names = [CLASSES[i] for i in s["labels"][first][keep].astype(int)]
        title = f"{frame.token}: {len(det)} detections with score >= {self.options.score_threshold}"
        stem = self.ctx.artifact_stem("det3d")
        return [plot_bev(load_points(frame, self.sweeps), frame.boxes, frame.names, det, names,
                         Path(out_dir) / f"{stem}_bev.png", extent=max(abs(v) for v in self.model.pc_range[:2]) + 2,
                         title=title),
                plot_cameras(frame, det, names, Path(out_dir) / f"{stem}_cameras.png", upright_in_world=False,
                             title=title)]
