import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from conftest import require_data
from zoo.errors import ZooError
from zoo.models.knn_ood.convert import convert
from zoo.models.knn_ood.detector import OODDetector
from zoo.models.knn_ood.index import KNNIndex
from zoo.models.knn_ood.scorers import (EnergyScorer, Features, KNNScorer, MahalanobisScorer, MSPScorer,
                                        build_scorers)
from zoo.models.knn_ood.supcon import supcon_loss


@pytest.mark.parametrize("name, kwargs, dim", [("knn_ood_resnet20", {}, 64),
                                               ("knn_ood_cifar_resnet", {"depth": 110}, 64),
                                               ("knn_ood_resnet18", {"num_classes": 100}, 512)])
def test_backbone_shapes_and_gradients(name, kwargs, dim):
    m = zoo.create_model(name, **kwargs)
    x = torch.randn(2, 3, 32, 32)
    f = m.forward_features(x)
    assert f.shape == (2, dim) and m.num_features == dim
    logits = m(x)
    assert logits.shape == (2, kwargs.get("num_classes", 10))
    logits.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_bad_depth_is_a_user_error():
    with pytest.raises(ZooError, match="6n\\+2"):
        zoo.create_model("knn_ood_cifar_resnet", depth=21)


def _akamaster_state_dict(depth: int) -> dict:
    """A state dict with the authors' exact key names and shapes: ``module.`` prefix, ``linear`` head, no BN
    counters (as akamaster's checkpoints saved by old PyTorch)."""
    sd = zoo.create_model("knn_ood_cifar_resnet", depth=depth).state_dict()
    return {"module." + k.replace("fc.", "linear."): v.clone().normal_() if v.is_floating_point() else v
            for k, v in sd.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("depth", [32, 44, 110])
def test_converter_infers_unseen_depths(depth, tmp_path):
    sd = _akamaster_state_dict(depth)
    src = tmp_path / "ck.th"
    torch.save({"state_dict": sd, "best_prec1": 90.0}, src)
    out = convert(src, tmp_path / "out")
    m = zoo.from_pretrained(out)
    assert m.zoo_cfg["model_args"]["depth"] == depth
    assert torch.equal(m.state_dict()["fc.weight"], sd["module.linear.weight"])
    assert json.loads((out / "config.json").read_text())["metadata"]["best_prec1"] == 90.0


def test_converter_knn_ood_resnet18_layout(tmp_path):
    sd = {k.replace(".shortcut.", ".downsample."): v.clone().normal_() if v.is_floating_point() else v
          for k, v in zoo.create_model("knn_ood_resnet18").state_dict().items()}
    sd.update({"head.0.weight": torch.zeros(512, 512), "head.0.bias": torch.zeros(512),
               "head.2.weight": torch.zeros(128, 512), "head.2.bias": torch.zeros(128)})
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "checkpoint_500.pth.tar")
    with pytest.warns(UserWarning, match="SupCon checkpoint: its fc classifier was never trained"):
        out = convert(tmp_path / "checkpoint_500.pth.tar", tmp_path / "out")
    m = zoo.from_pretrained(out)
    assert torch.equal(m.layer2[0].shortcut[0].weight, sd["layer2.0.downsample.0.weight"])
    assert zoo.model_info(str(out))["classifier"] == "untrained" == m.zoo_cfg["classifier"]
    assert zoo.from_pretrained(zoo.save_pretrained(m, tmp_path / "again")).zoo_cfg["classifier"] == "untrained"


def test_ood_eval_of_an_untrained_classifier_uses_the_feature_scorers_only(tmp_path, shapes_data, textures_data,
                                                                          capsys):
    """A converted SupCon model (``classifier: untrained``): the default scorers lose MSP and energy, naming
    either is one error, and the ID accuracy is null."""
    from zoo.cli import main

    model = zoo.create_model("knn_ood_resnet20", num_classes=10)
    model.zoo_cfg = {**model.zoo_cfg, "classifier": "untrained"}
    folder, out = zoo.save_pretrained(model, tmp_path / "supcon"), tmp_path / "ood.json"
    common = ["eval", str(folder), "--task", "ood", "--id-data", str(shapes_data), "--ood", str(textures_data),
              "--k", "5", "--num-workers", "0", "--id-train-subset", "40", "--id-test-subset", "20"]
    assert main(common + ["--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert {x["scorer"] for x in r["results"]} == {"knn", "mahalanobis"}
    assert r["classifier"] == "untrained" and r["id_accuracy"] is None
    assert main(common + ["--scorers", "knn,msp"]) == 2
    assert "--scorers msp: this model's classifier was never trained" in capsys.readouterr().err
    assert main(common + ["--scorers", "knn,mahalanobis,knn"]) == 2  # one row per scorer, not two alike
    assert "--scorers names knn more than once; name each scorer once" in capsys.readouterr().err
    assert main(common + ["--alpha", "0.5"]) == 0  # the table's bank is the kept share, not all the features
    assert "alpha=0.5, bank 20 of 40 training features" in capsys.readouterr().out


def test_converter_rejects_unknown_layout(tmp_path):
    torch.save({"state_dict": {"encoder.w": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(ZooError, match="unrecognised layout"):
        convert(tmp_path / "x.pth", tmp_path / "out")


def test_real_checkpoints_convert_and_match_manifest(tmp_path):
    folder = require_data("cifar10_resnets")
    for depth in (20, 56):
        src = next(folder.glob(f"resnet{depth}-*.th"))
        m = zoo.from_pretrained(convert(src, tmp_path / str(depth)))
        ref = zoo.create_model(f"knn_ood_resnet{depth}.cifar10", pretrained=True)
        for (k, a), b in zip(m.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), k


@pytest.fixture(scope="module")
def cifar10_test_300(tmp_path_factory):
    """300 seeded real CIFAR-10 (JPEG) test images, copied into ``<folder>/test/<class>/``: (folder, [PIL image],
    labels [300])."""
    import shutil

    require_data("cifar10_jpeg")
    from zoo.data.views import seeded_subset
    from zoo.data.images import open_split

    ds = open_split("cifar10_jpeg", "test")
    folder = tmp_path_factory.mktemp("cifar10_300")
    for i in seeded_subset(len(ds), 300, seed=0):
        dest = folder / "test" / ds.classes[ds.labels[i]] / ds.paths[i].name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ds.paths[i], dest)
    sub = open_split(folder, "test")
    assert sub.classes == ds.classes and len(sub) == 300
    images, labels = zip(*(sub[i] for i in range(len(sub))))
    return folder, images, torch.tensor(labels)


@pytest.mark.parametrize("key", ["knn_ood_resnet20.cifar10", "knn_ood_resnet56.cifar10"])
def test_published_cifar_resnets_classify_real_images(key, cifar10_test_300):
    """The published weights through the zoo's model (option-A shortcuts and all) and its input spec (akamaster's
    ImageNet mean/std) on real images: the manifest's top-1 over the whole JPEG test set is 0.81 / 0.83; a wrong
    shortcut padding, layer order or normalisation falls far below."""
    from zoo.data.transforms import eval_transform

    _, images, y = cifar10_test_300
    m = zoo.create_model(key, pretrained=True).eval()
    x = torch.stack([eval_transform(m.input_spec)(im) for im in images])
    with torch.inference_mode():
        top1 = (m(x).argmax(1) == y).float().mean().item()
    assert top1 > 0.7, f"{key}: top-1 {top1:.3f} on 300 real CIFAR-10 test images"


def test_eval_bf16_mixed_is_close_to_fp32(cifar10_test_300, tmp_path):
    """``zoo eval --precision bf16-mixed`` runs the network in bfloat16 (autocast) and keeps the fp32 top-1 on
    real images to within two points."""
    from zoo.eval import evaluate

    folder, _, _ = cifar10_test_300
    m = zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True).eval()
    dtypes = []
    m.fc.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
    r = {p: evaluate("unused", "classification", model=m, data=str(folder), precision=p, batch_size=100,
                     num_workers=0, save_scores=tmp_path / p) for p in ("32", "bf16-mixed")}
    assert dtypes == [torch.float32] * 3 + [torch.bfloat16] * 3
    assert r["32"]["top1"] > 0.7 and abs(r["bf16-mixed"]["top1"] - r["32"]["top1"]) <= 0.02
    agree = np.load(tmp_path / "32" / "test.npz")["top1"] == np.load(tmp_path / "bf16-mixed" / "test.npz")["top1"]
    assert agree.mean() >= 0.95


def test_classification_eval_matches_class_folders_to_the_model_by_name(cifar10_test_300, tmp_path):
    """A folder of real CIFAR-10 cats and dogs only: cat used to become label 0 (airplane), so top-1 was 0 %. With
    the model's class names recorded (``zoo_cfg["classes"]``) the folders are matched by name; without them the
    printed result says the labels are the sorted folder names. The manifest's CIFAR-10 weights record them."""
    import shutil

    from zoo.data.images import open_split
    from zoo.eval import evaluate, get_task

    folder, _, _ = cifar10_test_300
    for cls in ("cat", "dog"):
        shutil.copytree(folder / "test" / cls, tmp_path / "catdog" / "test" / cls)
    m = zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True)
    assert m.zoo_cfg.pop("classes") == open_split(folder, "test").classes  # the manifest's: CIFAR-10's
    task = get_task("classification")(data=str(tmp_path / "catdog"))
    unnamed = evaluate("unused", "classification", model=m, data=str(tmp_path / "catdog"), num_workers=0)
    assert unnamed["labels_from"] == "sorted folder names" and unnamed["top1"] < 0.2
    assert task.table(unnamed).endswith("; labels: the sorted folder names, as the model records no class names")
    m = zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True)
    named = evaluate("unused", "classification", model=m, data=str(tmp_path / "catdog"), num_workers=0)
    assert named["labels_from"] == "model class names" and named["top1"] > 0.6 and named["n"] == unnamed["n"] > 40
    assert task.table(named).endswith(" %")


def test_eval_on_cuda_without_a_gpu_is_a_one_line_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    from zoo.cli import main

    assert main(["eval", "knn_ood_resnet20.cifar10", "--task", "classification", "--data", "cifar10_jpeg",
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "zoo: error: --device cuda given but no CUDA device is available"


def test_torch_and_faiss_return_the_same_neighbours():
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(5000, 64, generator=g), dim=1)
    q = F.normalize(torch.randn(200, 64, generator=g), dim=1)
    d_f, i_f = KNNIndex(bank, backend="faiss").search(q, 50)
    d_t, i_t = KNNIndex(bank, backend="torch", chunk=1024).search(q, 50)  # several chunks
    assert torch.equal(i_f, i_t)
    assert torch.allclose(d_f, d_t, atol=1e-5)
    exact = torch.cdist(q, bank).pow(2).topk(50, largest=False)
    assert torch.equal(exact.indices, i_t)


def test_faiss_backend_without_faiss_names_the_extra(monkeypatch):
    """With faiss not importable, asking for its index raises `MissingDependency` (a user error and an
    ImportError) naming the package and the extra; the default torch backend still works."""
    import sys

    from zoo.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    bank = F.normalize(torch.randn(50, 8), dim=1)
    with pytest.raises(MissingDependency) as exc:
        KNNIndex(bank, backend="faiss").search(bank[:2], 3)
    assert isinstance(exc.value, ZooError) and isinstance(exc.value, ImportError)
    assert "'faiss-cpu' is required" in str(exc.value) and "pip install -e '.[ood]'" in str(exc.value)
    assert KNNIndex(bank).search(bank[:2], 3)[1][:, 0].tolist() == [0, 1]
    with pytest.raises(MissingDependency, match="faiss-cpu"):  # the ood task builds its scorers before extracting
        build_scorers(["knn", "msp"], backend="faiss-ivf")


def test_ivf_is_approximate_but_close():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(10, 32, generator=g) * 3  # class-clustered, like real penultimate features
    bank = F.normalize(centres[torch.arange(20000) % 10] + torch.randn(20000, 32, generator=g), dim=1)
    q = F.normalize(centres[torch.arange(100) % 10] + torch.randn(100, 32, generator=g), dim=1)
    exact = KNNIndex(bank, backend="faiss").search(q, 10)[1]
    approx = KNNIndex(bank, backend="faiss-ivf", nprobe=32).search(q, 10)[1]
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.8
    # one probed cell of ~141 rows cannot give 1000 neighbours: faiss pads with -1, which is refused, not scored
    with pytest.raises(ZooError, match=r"found fewer than k=1000 neighbours for \d+ of 100 queries: its 1 probed"):
        KNNIndex(bank, backend="faiss-ivf", nprobe=1).search(q, 1000)
    # the torch search with chunks smaller than k gathers its k over several chunks
    assert torch.equal(KNNIndex(bank[:500], backend="torch", chunk=7).search(q, 20)[1],
                       KNNIndex(bank[:500], backend="torch").search(q, 20)[1])


def _features(n=600, c=3, d=16, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    centres = torch.randn(c, d, generator=torch.Generator().manual_seed(42)) * 4
    f = centres[y] + torch.randn(n, d, generator=g) + shift
    return Features(f, torch.randn(n, c, generator=g), y)


def test_knn_score_is_negative_kth_squared_distance_and_alpha_subsamples():
    train, test = _features(), _features(n=50, seed=1)
    s = KNNScorer(k=5).setup(train)
    bank = F.normalize(train.features, dim=1)
    direct = -torch.cdist(F.normalize(test.features, dim=1), bank).pow(2).topk(5, largest=False).values[:, -1]
    assert torch.allclose(s.score(test), direct, atol=1e-5)
    half = KNNScorer(k=5, alpha=0.5, seed=3).setup(train)
    kept = half.index.bank
    rows = torch.cdist(kept, bank).argmin(1)  # which training feature each bank row is
    assert len(half.index) == 300 and len(set(rows.tolist())) == 300 and torch.equal(bank[rows], kept)
    assert torch.equal(KNNScorer(k=5, alpha=0.5, seed=3).setup(train).index.bank, kept)  # seeded
    assert not torch.equal(KNNScorer(k=5, alpha=0.5, seed=4).setup(train).index.bank, kept)  # drawn, not a prefix
    on_kept = -torch.cdist(F.normalize(test.features, dim=1), kept).pow(2).topk(5, largest=False).values[:, -1]
    assert torch.allclose(half.score(test), on_kept, atol=1e-5)
    with pytest.raises(ZooError, match="larger than the kNN bank"):
        KNNScorer(k=601).setup(train)


def test_baseline_scorers_against_direct_formulas():
    train, test = _features(), _features(n=40, seed=2)
    assert torch.allclose(MSPScorer().score(test), test.logits.softmax(1).max(1).values)
    assert torch.allclose(EnergyScorer().score(test), torch.logsumexp(test.logits, 1))
    assert torch.allclose(EnergyScorer(temperature=2.0).score(test), 2 * torch.logsumexp(test.logits / 2, 1))
    maha = MahalanobisScorer().setup(train)
    f, y = train.features.double(), train.labels
    mu = torch.stack([f[y == c].mean(0) for c in range(3)])
    cov = sum((f[y == c] - mu[c]).T @ (f[y == c] - mu[c]) for c in range(3)) / len(f)
    prec = torch.linalg.inv(cov)
    t = test.features.double()
    direct = -torch.stack([((t - mu[c]) @ prec * (t - mu[c])).sum(1) for c in range(3)], 1).min(1).values
    assert torch.allclose(maha.score(test).double(), direct, rtol=1e-4, atol=1e-3)


def test_scores_rank_shifted_data_as_ood():
    from zoo.metrics.ood import auroc

    train, idd, ood = _features(), _features(n=200, seed=5), _features(n=200, seed=6, shift=6.0)
    for s in build_scorers(["knn", "mahalanobis"], k=10):
        s.setup(train)
        assert auroc(s.score(idd), s.score(ood)) > 0.95


def test_detector_saves_and_reloads_index(tmp_path, shapes_data):
    from torch.utils.data import DataLoader

    from zoo.data.views import TransformView
    from zoo.data.images import open_split
    from zoo.data.transforms import eval_transform

    model = zoo.create_model("knn_ood_resnet20").eval()
    ds = open_split(shapes_data, "train")
    loader = DataLoader(TransformView(ds, np.arange(64), eval_transform(model.input_spec)), batch_size=32)
    det = OODDetector(model, build_scorers(["knn", "msp", "mahalanobis"], k=5)).setup(loader)
    det.save(tmp_path / "det")
    det2 = OODDetector.load(tmp_path / "det")
    x = next(iter(loader))[0]
    a, b = det.score(x), det2.score(x)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    torch.manual_seed(1)  # the folder's backbone replaced (zoo convert --force), its old scorers left beside it
    zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "det")
    with pytest.raises(ZooError, match="was fitted on the features of another backbone than .*fit the detector on "
                                       "this backbone"):
        OODDetector.load(tmp_path / "det")


def test_supcon_loss_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(6, 2, 8, generator=g), dim=2)
    y = torch.tensor([0, 1, 0, 2, 1, 0])
    feats = torch.cat([z[:, 0], z[:, 1]])
    labels = torch.cat([y, y])
    t, total = 0.1, 0.0
    for i in range(12):
        others = [a for a in range(12) if a != i]
        denom = torch.logsumexp(torch.stack([feats[i] @ feats[a] / t for a in others]), 0)
        pos = [p for p in others if labels[p] == labels[i]]
        total += -sum(feats[i] @ feats[p] / t - denom for p in pos) / len(pos)
    expected = (t / 0.07) * total / 12
    assert torch.allclose(supcon_loss(z, y, t, 0.07), expected, atol=1e-5)


def test_supcon_module_trains_one_step(shapes_data, tmp_path):
    import pytorch_lightning as pl

    from zoo.data.classification import ImageClassificationDataModule
    from zoo.models.knn_ood.supcon import SupConModule

    module = SupConModule(model="knn_ood_resnet20", lr=0.05)
    dm = ImageClassificationDataModule(str(shapes_data), batch_size=16, num_workers=0, augment="contrastive")
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, default_root_dir=tmp_path, accelerator="cpu")
    before = module.model.conv1.weight.detach().clone()
    trainer.fit(module, dm)
    assert not torch.equal(before, module.model.conv1.weight)
    assert "train/supcon" in trainer.callback_metrics


def test_feature_extraction_gathers_across_processes(shapes_data, tmp_path):
    """Two gloo ranks, each on its DistributedSampler shard (with padding), give the single-process result."""
    import torch.multiprocessing as mp

    model = zoo.create_model("knn_ood_resnet20").eval()
    zoo.save_pretrained(model, tmp_path / "m")
    mp.spawn(_gather_worker, args=(2, str(tmp_path), str(shapes_data)), nprocs=2, join=True)
    single = _extract_shapes(model, str(shapes_data), None)
    gathered = torch.load(tmp_path / "rank0.pt")
    assert torch.allclose(gathered["features"], single.features, atol=1e-5)
    assert torch.equal(gathered["labels"], single.labels)


def _extract_shapes(model, data, sampler):
    from torch.utils.data import DataLoader

    from zoo.data.views import TransformView
    from zoo.data.images import open_split
    from zoo.data.transforms import eval_transform
    from zoo.models.knn_ood.features import extract

    ds = open_split(data, "test")
    view = TransformView(ds, np.arange(97), eval_transform(model.input_spec))  # odd size: the sampler pads
    if sampler is not None:
        sampler = sampler(view)
    return extract(model, DataLoader(view, batch_size=16, sampler=sampler))


def _gather_worker(rank, world, tmp, data):
    import os

    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = zoo.from_pretrained(f"{tmp}/m").eval()
    out = _extract_shapes(model, data, lambda ds: DistributedSampler(ds, world, rank, shuffle=False))
    if rank == 0:
        torch.save({"features": out.features, "labels": out.labels}, f"{tmp}/rank0.pt")
    dist.destroy_process_group()


class _Flatten(torch.nn.Module):
    """A parameter-free backbone: features = the flattened image [B, C*H*W], logits = their first 2 entries."""

    def forward_features(self, x):
        return x.flatten(1)

    def forward_head(self, f):
        return f[:, :2]


def test_features_and_the_knn_bank_stay_on_the_evaluation_device(monkeypatch):
    """`extract` returns the features on the device it ran on, and the kNN bank is built there, so a CUDA
    evaluation searches the bank on the GPU (torch path, or faiss-gpu when faiss sees a GPU). "meta" stands in for
    CUDA (placement only; no numbers); autocast has no meta backend, and is disabled in fp32 anyway."""
    import contextlib

    from torch.utils.data import DataLoader, TensorDataset

    from zoo.models.knn_ood.features import extract

    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())
    loader = DataLoader(TensorDataset(torch.randn(8, 3, 2, 2), torch.arange(8) % 2), batch_size=4)
    feats = extract(_Flatten(), loader, device="meta")
    assert [t.device.type for t in (feats.features, feats.logits, feats.labels)] == ["meta"] * 3
    assert feats.features.shape == (8, 12)
    assert KNNScorer(k=2).setup(feats).index.bank.device.type == "meta"


def test_saved_detector_with_a_missing_state_or_unknown_scorer_is_a_user_error(tmp_path):
    from safetensors.torch import save_file

    from zoo.models.knn_ood.detector import SCORERS_FILE

    with pytest.raises(ZooError, match=r"no bank \(knn.bank\); the detector was saved before setup"):
        KNNScorer(k=5).load_state({})
    det = OODDetector(zoo.create_model("knn_ood_resnet20"), [MSPScorer()])
    folder = det.save(tmp_path / "det")
    save_file({}, str(folder / SCORERS_FILE), metadata={"scorers": json.dumps([{"name": "odin"}])})
    with pytest.raises(ZooError, match=r"holds a scorer 'odin' this zoo does not know"):
        OODDetector.load(folder)


def test_saved_detector_with_a_truncated_scorers_file_is_one_error(tmp_path):
    from zoo.models.knn_ood.detector import SCORERS_FILE

    folder = OODDetector(zoo.create_model("knn_ood_resnet20"), [MSPScorer()]).save(tmp_path / "det")
    data = (folder / SCORERS_FILE).read_bytes()
    (folder / SCORERS_FILE).write_bytes(data[:len(data) // 2])
    with pytest.raises(ZooError, match=r"cannot read .*det/ood_scorers.safetensors: truncated, corrupt or not "
                                       r"written by OODDetector.save \(SafetensorError"):
        OODDetector.load(folder)


@pytest.mark.parametrize("images", [torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, 1, 32, 32)],
                         ids=["uint8", "one-channel"])
def test_detector_score_checks_its_input_as_the_model_does(images):
    """`score` calls forward_features, which skipped the model's input check: uint8 gave 'expected scalar type Byte
    but found Float' and one channel a raw convolution error."""
    model = zoo.create_model("knn_ood_resnet20").eval()
    det = OODDetector(model, [MSPScorer()])
    with pytest.raises(ZooError) as from_model:
        model(images)
    with pytest.raises(ZooError) as from_detector:
        det.score(images)
    assert str(from_detector.value) == str(from_model.value)


def test_classifier_module_records_the_data_classes_in_the_model(shapes_data, tmp_path):
    """What `zoo fit` exports carries the class names its labels index (``zoo_cfg["classes"]``, saved in
    config.json), so evaluation can match folders by name; more classes than outputs fails before training."""
    import pytorch_lightning as pl

    from zoo.data.classification import ImageClassificationDataModule
    from zoo.training.classification import ClassifierModule

    def fit(module):
        dm = ImageClassificationDataModule(str(shapes_data), batch_size=16, num_workers=0, train_subset=32)
        trainer = pl.Trainer(max_steps=1, limit_val_batches=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, default_root_dir=tmp_path, accelerator="cpu")
        trainer.fit(module, dm)
        return dm

    module = ClassifierModule(model="knn_ood_resnet20")
    dm = fit(module)
    assert module.model.zoo_cfg["classes"] == dm.classes and len(dm.classes) == 10
    saved = json.loads((zoo.save_pretrained(module.model, tmp_path / "m") / "config.json").read_text())
    assert saved["classes"] == dm.classes
    with pytest.raises(ZooError, match="the data has 10 classes but knn_ood_resnet20 has 4 outputs: set "
                                       "model_args.num_classes to 10"):
        fit(ClassifierModule(model="knn_ood_resnet20", model_args={"num_classes": 4}))


def test_ood_eval_end_to_end_json_and_plots(tmp_path, shapes_data, textures_data):
    from zoo.cli import main

    out = tmp_path / "ood.json"
    assert main(["eval", "knn_ood_resnet20.cifar10", "--task", "ood", "--id-data", str(shapes_data), "--ood",
                 str(textures_data), "--k", "5", "--num-workers", "0", "--json", str(out),
                 "--save-scores", str(tmp_path / "scores")]) == 0
    r = json.loads(out.read_text())
    assert set(r) >= {"id_accuracy", "k", "results"} and r["k"] == 5
    assert r["labels_from"] == "folder names that are not the model's classes" and r["id_accuracy"] is None
    assert {(x["ood"], x["scorer"]) for x in r["results"]} == {("textures", s) for s in
                                                               ("knn", "msp", "energy", "mahalanobis")}
    assert all(set(x) == {"ood", "scorer", "fpr95", "auroc", "aupr_in", "aupr_out"} for x in r["results"])
    assert (tmp_path / "ood_scores_knn.png").stat().st_size > 1000
    scores = np.load(tmp_path / "scores" / "textures.npz")
    from zoo.metrics.ood import fpr_at_tpr

    idd = np.load(tmp_path / "scores" / "id.npz")
    knn = next(x for x in r["results"] if x["scorer"] == "knn")
    assert fpr_at_tpr(idd["knn"], scores["knn"]) == knn["fpr95"]  # metrics recompute from saved scores


@pytest.mark.parametrize("extra, needle", [
    (["--k", "100000"], "larger than the kNN bank"),
    (["--ood", "/no/such/dir"], "does not exist"),
    (["--ood", "imagenet_o"], "nor is 'imagenet_o' a catalogue dataset"),
    (["--scorers", "knn,odin"], "unknown scorer 'odin'"),
])
def test_ood_eval_errors(extra, needle, shapes_data, textures_data, capsys):
    from zoo.cli import main

    argv = ["eval", "knn_ood_resnet20.cifar10", "--task", "ood", "--id-data", str(shapes_data), "--ood",
            str(textures_data), "--num-workers", "0", *extra]
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_ood_id_data_needs_separate_splits(shapes_data, textures_data, capsys):
    """A folder without train/ and test/ used to be both the kNN bank and the ID test set (the same images)."""
    from zoo.cli import main

    argv = ["eval", "knn_ood_resnet20.cifar10", "--task", "ood", "--id-data", str(shapes_data / "test"), "--ood",
            str(textures_data), "--k", "5", "--num-workers", "0"]
    assert main(argv) == 2
    assert "test needs separate train and test splits (found neither)" in capsys.readouterr().err


def test_an_idx_ood_set_needs_no_labels(tmp_path):
    import gzip
    import struct

    from zoo.models.knn_ood.ood_task import open_ood

    x = np.random.default_rng(0).integers(0, 255, (3, 28, 28), dtype=np.uint8)
    (tmp_path / "idx").mkdir()
    with gzip.open(tmp_path / "idx" / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 8, 3, 3, 28, 28) + x.tobytes())
    ds = open_ood(str(tmp_path / "idx"))
    assert len(ds) == 3 and ds.name == "idx" and np.array_equal(np.asarray(ds[1][0]), x[1])


def test_ood_eval_names_an_unreadable_image(tmp_path, shapes_data, capsys):
    from zoo.cli import main

    bad = tmp_path / "bad_ood"
    bad.mkdir()
    (bad / "ok.png").write_bytes((next(shapes_data.rglob("*.png"))).read_bytes())
    (bad / "broken.jpg").write_bytes(b"garbage")
    argv = ["eval", "knn_ood_resnet20.cifar10", "--task", "ood", "--id-data", str(shapes_data), "--ood", str(bad),
            "--k", "5", "--num-workers", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(r"cannot read image .*broken\.jpg", err) and len(err.strip().splitlines()) == 1


def test_ood_eval_rejects_a_non_classifier(tmp_path, shapes_data, textures_data):
    from zoo.eval import evaluate

    class NotAClassifier(torch.nn.Linear):
        pass

    with pytest.raises(ZooError, match="no forward_features"):
        evaluate("x", "ood", model=NotAClassifier(2, 2), id_data=str(shapes_data), ood=[str(textures_data)],
                 k=5, alpha=1.0, scorers="knn", backend="auto", id_train_subset=None, id_test_subset=None,
                 ood_subset=None)


# slow (43.8 s in a `pytest --durations` run on the shared CPU, 2026-12-07): the default suite keeps the gather
# through test_feature_extraction_gathers_across_processes
@pytest.mark.slow
def test_torchrun_sharded_eval_matches_single_process(tmp_path, shapes_data, textures_data):
    """`torchrun --nproc_per_node 2 -m zoo eval ...` shards every dataset (gloo on CPU) and gathers the scores."""
    import os
    import subprocess
    import sys

    args = ["eval", "knn_ood_resnet20.cifar10", "--task", "ood", "--id-data", str(shapes_data), "--ood",
            str(textures_data), "--k", "5", "--num-workers", "0", "--batch-size", "32"]
    from zoo.cli import main

    assert main([*args, "--json", str(tmp_path / "single.json")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29561",
           "-m", "zoo", *args, "--json", str(tmp_path / "sharded.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    single, sharded = (json.loads((tmp_path / f).read_text()) for f in ("single.json", "sharded.json"))
    assert sharded["n_id_test"] == single["n_id_test"] and sharded["n_ood"] == single["n_ood"]
    for a, b in zip(single["results"], sharded["results"]):
        assert a["ood"] == b["ood"] and a["scorer"] == b["scorer"]
        for m in ("fpr95", "auroc", "aupr_in", "aupr_out"):
            assert b[m] == pytest.approx(a[m], abs=1e-6)


def test_timm_backbone_behind_the_same_interface():
    m = zoo.create_model("knn_ood_timm", model_name="resnet18", num_classes=4, image_size=64).eval()
    assert m.input_spec["input_size"] == [3, 64, 64] and m.num_features == 512
    x = torch.randn(2, 3, 64, 64)
    f = m.forward_features(x)
    assert f.shape == (2, 512) and torch.allclose(m.forward_head(f), m(x), atol=1e-5)
    with pytest.raises(ZooError, match="timm cannot build"):
        zoo.create_model("knn_ood_timm", model_name="not_a_timm_model")


def test_torch_search_keeps_the_banks_precision_under_bf16_autocast():
    """An evaluation's ``--precision bf16-mixed`` autocasts the network; the search stays in the bank's fp32, as faiss
    searches (in bf16 the similarities of 2 000 queries took 28 distinct values)."""
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(2000, 64, generator=g), dim=1)
    q = F.normalize(torch.randn(200, 64, generator=g), dim=1)
    index = KNNIndex(bank, backend="torch")
    plain = index.search(q, 5)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = index.search(q, 5)[0]
    assert torch.equal(plain, autocast) and autocast.dtype == torch.float32
