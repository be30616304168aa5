"""CMT: Cross Modal Transformer: Towards Fast and Robust 3D Object Detection (Yan et al., ICCV 2023)."""

from zoo.registry import Paper

_M = "zoo.models.cmt.model"

PAPER = Paper(
    id="cmt",
    title="Cross Modal Transformer: Towards Fast and Robust 3D Object Detection",
    authors="Yan, Liu, Sun, Jia, Li, Wang, Zhang",
    venue="ICCV 2023",
    arxiv="2301.01283",
    code="https://github.com/junjie18/CMT",
    license="CMT code: Apache-2.0; nuScenes data: CC BY-NC-SA 4.0",
    models={
        "cmt_fusion_r50": f"{_M}:cmt_fusion_r50",
        "cmt_fusion_vov99": f"{_M}:cmt_fusion_vov99",
        "cmt_camera_r50": f"{_M}:cmt_camera_r50",
        "cmt_camera_vov99": f"{_M}:cmt_camera_vov99",
        "cmt_lidar_voxel0075": f"{_M}:cmt_lidar_voxel0075",
        "cmt_tiny": f"{_M}:cmt_tiny",
        "cmt_tiny_lite0": f"{_M}:cmt_tiny_lite0",
    },
    tasks={"det3d": "zoo.models.cmt.det3d_task:Det3DTask"},
    converter="zoo.models.cmt.convert:convert",
    bench="zoo.models.cmt.bench:cmt_adapter",
    demo="zoo.models.cmt.demo:run",
    card="zoo/models/cmt/README.md",
    extra="det3d",
)
