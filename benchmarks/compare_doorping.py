"""DC gradient matching: seconds per outer iteration, the zoo vs a plain re-statement of the authors' loop.

One *outer iteration* of DC at 10 images per class (ConvNet, 10 classes): the matching loss over all classes, one
SGD step on the synthetic images, and the inner loop (50 epochs of the network on the synthetic set), from the
same network, the same real batches (256 per class) and the same synthetic images for both paths:

* ``original``: the authors' structure (DOORPING's DC/main.py): for each class, a forward and ``autograd.grad`` on
  the real batch, another on the class's synthetic images with ``create_graph=True``, the layer-wise distance
  summed in Python loops; the inner loop through a ``TensorDataset`` / ``DataLoader`` as their ``epoch()`` does.
* ``zoo``: `zoo.models.doorping.matching` (the real images' per-class gradients through ``torch.compile``, the
  distance of all classes and layers at once, the image step back-propagated to the images only), channels-last
  convolutions, and `train_network` with ``compile=True`` for the inner loop: the code `GradientMatching` runs with
  ``compile: true`` (the recipes' setting). On a GPU the inner loop's steps are also replayed from a CUDA graph
  (``cuda_graph: true``; ``--no-cuda-graph`` turns that off).

The two matching losses must agree to 1e-5 (relative) before anything is timed (on a GPU both paths run in strict
fp32, TF32 off, for that); the networks after one whole
iteration (whose inner loops differ only in floating-point order) are compared too. The two paths are timed in
turn (original, zoo, original, ...), after a warm-up that includes the zoo's one-off compilation. Real images are CIFAR-10 JPEG
training images when ``../shared/data`` has them, else N(0, 1) noise (the timing does not depend on pixel values).

    python benchmarks/compare_doorping.py                       # CPU, the paper's shapes
    python benchmarks/compare_doorping.py --device cuda         # GPU (goal: 3x)
    python benchmarks/compare_doorping.py --batch-real 64 --inner-loop 5 --iters 2   # a quick CPU check
    python benchmarks/compare_doorping.py --parts               # and where the time goes (real, syn, inner)

With ``--parts`` each part's FLOPs are counted too (`zoo.bench.harness.count_flops`, on the original path) and
each path's rate is given as a fraction of the fp32 matrix-multiply peak (`zoo.bench.peaks.peak_for`: the table
for known GPUs, measured in the run otherwise): how much room a faster implementation of the same arithmetic has.
"""

from __future__ import annotations

import argparse
import copy
import functools

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.bench.compare import save, timeit_alternating
from zoo.bench.harness import count_flops
from zoo.bench.peaks import peak_for
from zoo.models.doorping.evaluate import train_network
from zoo.models.doorping.matching import class_gradients, match_loss


def authors_distance(gr: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
    """DC's ``distance_wb`` as written: reshape to [out, -1], sum of 1 - cosine over rows; 1-D gives 0."""
    if gr.dim() == 1:
        return torch.tensor(0.0, device=gr.device)
    gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
    return torch.sum(1 - torch.sum(gr * gs, dim=-1) / (torch.norm(gr, dim=-1) * torch.norm(gs, dim=-1) + 0.000001))


def original_loss(net, real, syn, ipc):
    """The authors' per-class loop; returns the summed matching loss (graph to ``syn``)."""
    params = list(net.parameters())
    loss = torch.tensor(0.0, device=syn.device)
    for c in range(real.shape[0]):
        lab_real = torch.ones((real.shape[1],), device=syn.device, dtype=torch.long) * c
        gw_real = torch.autograd.grad(F.cross_entropy(net(real[c]), lab_real), params)
        gw_real = [g.detach().clone() for g in gw_real]
        lab_syn = torch.ones((ipc,), device=syn.device, dtype=torch.long) * c
        gw_syn = torch.autograd.grad(F.cross_entropy(net(syn[c * ipc:(c + 1) * ipc]), lab_syn), params,
                                     create_graph=True)
        for gr, gs in zip(gw_real, gw_syn):
            loss += authors_distance(gr, gs)
    return loss


def original_iteration(net, real, syn, labels, ipc, inner_loop, batch_train=256, lr_img=0.1, lr_net=0.01):
    opt_img = torch.optim.SGD([syn], lr=lr_img, momentum=0.5)
    loss = original_loss(net, real, syn, ipc)
    opt_img.zero_grad()
    loss.backward()
    opt_img.step()
    original_inner(net, syn.detach(), labels, inner_loop, batch_train, lr_net)
    return float(loss.detach())


def original_inner(net, syn, labels, inner_loop, batch_train=256, lr_net=0.01):
    """Their inner loop: ``epoch('train', ...)`` over a ``DataLoader`` of the synthetic set, ``inner_loop`` times."""
    opt_net = torch.optim.SGD(net.parameters(), lr=lr_net)
    loader = DataLoader(TensorDataset(syn.clone(), labels.clone()), batch_size=batch_train, shuffle=True,
                        num_workers=0)
    for _ in range(inner_loop):
        for x, y in loader:
            out = net(x)
            step_loss = F.cross_entropy(out, y)
            (out.argmax(-1).cpu().numpy() == y.cpu().numpy()).sum()  # their epoch() counts accuracy per batch
            opt_net.zero_grad()
            step_loss.backward()
            opt_net.step()


def channels_last(x):
    return x.movedim(-3, -1).contiguous().movedim(-1, -3)


def zoo_loss(net, real, syn, ipc):
    k = real.shape[0]
    g_real = class_gradients(net, channels_last(real), create_graph=False, compile=True)
    g_syn = class_gradients(net, channels_last(syn.view(k, ipc, *syn.shape[1:])), create_graph=True)
    return match_loss(g_real, g_syn)


def zoo_iteration(net, real, syn, labels, ipc, inner_loop, batch_train=256, lr_img=0.1, lr_net=0.01,
                  cuda_graph=True):
    opt_img = torch.optim.SGD([syn], lr=lr_img, momentum=0.5)
    loss = zoo_loss(net, real, syn, ipc)
    opt_img.zero_grad()
    loss.backward(inputs=[syn])
    opt_img.step()
    zoo_inner(net, channels_last(syn.detach()), labels, inner_loop, batch_train, lr_net, cuda_graph)
    return float(loss.detach())


def zoo_inner(net, syn, labels, inner_loop, batch_train=256, lr_net=0.01, cuda_graph=True):
    train_network(net, syn, labels, epochs=inner_loop, lr=lr_net, momentum=0.0, weight_decay=0.0,
                  batch_size=batch_train, lr_decay=False, compile=True, cuda_graph=cuda_graph)


def part_timings(net0, net_cl, real, syn0, labels, ipc, inner_loop, device, warmup, iters,
                 cuda_graph) -> list[dict]:
    """Seconds of the three parts of an outer iteration, each path's way, timed in turn: ``real`` (the per-class
    gradients on the real images), ``syn`` (the synthetic images' gradients with their graph, and the backward of a
    function of them to the images), ``inner`` (the inner loop's training steps); and each part's FLOPs (counted
    on the original path, eager; both paths do the same arithmetic)."""
    k = real.shape[0]
    params = list(net0.parameters())
    real_cl, syn_cl = channels_last(real), channels_last(syn0)

    def authors_real():
        for c in range(k):
            torch.autograd.grad(F.cross_entropy(net0(real[c]), torch.full((real.shape[1],), c, device=device)), params)

    def authors_syn():  # their backward also reaches the network's parameters
        syn = syn0.clone().requires_grad_(True)
        total = 0.0
        for c in range(k):
            y = torch.full((ipc,), c, device=device)
            g = torch.autograd.grad(F.cross_entropy(net0(syn[c * ipc:(c + 1) * ipc]), y), params, create_graph=True)
            total = total + sum((x * x).sum() for x in g)
        total.backward()

    def zoo_syn():
        syn = syn_cl.clone().requires_grad_(True)
        g = class_gradients(net_cl, syn.view(k, ipc, *syn.shape[1:]), create_graph=True)
        sum((x * x).sum() for x in g).backward(inputs=[syn])

    paths = {("real", "original"): authors_real,
             ("real", "zoo"): lambda: class_gradients(net_cl, real_cl, create_graph=False, compile=True),
             ("syn", "original"): authors_syn, ("syn", "zoo"): zoo_syn,
             ("inner", "original"): lambda: original_inner(copy.deepcopy(net0), syn0, labels, inner_loop),
             ("inner", "zoo"): lambda: zoo_inner(copy.deepcopy(net_cl), syn_cl, labels, inner_loop,
                                                 cuda_graph=cuda_graph)}
    times = timeit_alternating({f"{part} {path}": fn for (part, path), fn in paths.items()}, device=device,
                               warmup=warmup, iters=iters)
    flops = {part: count_flops(lambda _, fn=paths[(part, "original")]: fn(), None) for part in ("real", "syn", "inner")}
    return [{"part": part, "path": path, "seconds": times[f"{part} {path}"]["p50"] / 1e3, "flops": flops[part]}
            for part, path in paths]


def real_batches(k: int, n: int, generator) -> tuple[torch.Tensor, str]:
    from zoo.data.catalog import available

    if available("cifar10_jpeg"):
        from zoo.models.doorping.real_images import load_real

        r = load_real("cifar10_jpeg", "train")
        idx = torch.stack([(r.labels == c).nonzero().squeeze(1)[torch.randperm(int((r.labels == c).sum()),
                                                                             generator=generator)[:n]]
                           for c in range(k)])
        return r.images[idx], "CIFAR-10 JPEG training images"
    return torch.randn(k, n, 3, 32, 32, generator=generator), "N(0, 1) noise (no ../shared/data)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--inner-loop", type=int, default=50)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--parts", action="store_true", help="also time the real-gradient, synthetic-gradient and "
                                                        "inner-loop parts of the iteration separately")
    p.add_argument("--no-cuda-graph", action="store_true", help="the zoo's inner loop without CUDA graphs (GPU)")
    a = p.parse_args()
    cuda_graph = not a.no_cuda_graph
    device = torch.device(a.device)
    if device.type == "cuda":  # both paths in strict fp32: cuDNN's default TF32 convolutions differ by ~1e-4
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    k = 10
    real, source = real_batches(k, a.batch_real, g)
    real = real.to(device)
    syn0 = torch.randn(k * a.ipc, 3, 32, 32, generator=g).to(device)
    labels = torch.arange(k, device=device).repeat_interleave(a.ipc)
    torch.manual_seed(0)
    net0 = zoo.create_model("doorping_convnet").to(device)
    net_cl = copy.deepcopy(net0).to(memory_format=torch.channels_last)

    syn = syn0.clone().requires_grad_(True)
    ref = original_loss(net0, real, syn, a.ipc)
    (g_ref,) = torch.autograd.grad(ref, syn)
    syn = syn0.clone().requires_grad_(True)
    got = zoo_loss(net_cl, real, syn, a.ipc)
    (g_got,) = torch.autograd.grad(got, syn)
    ref, got = ref.detach(), got.detach()
    rel = abs(float(got) - float(ref)) / abs(float(ref))
    grad_rel = float((g_got - g_ref).norm() / g_ref.norm())
    assert rel < 1e-5, f"matching losses differ: zoo {float(got)} vs original {float(ref)} (relative {rel:.2e})"
    print(f"matching loss: original {float(ref):.6f}, zoo {float(got):.6f} (relative difference {rel:.1e}; "
          f"image-gradient relative difference {grad_rel:.1e})")

    nets = {"original": copy.deepcopy(net0), "zoo": copy.deepcopy(net_cl)}
    zoo_it = functools.partial(zoo_iteration, cuda_graph=cuda_graph)
    for path, fn in (("original", original_iteration), ("zoo", zoo_it)):
        torch.manual_seed(1)  # the same shuffling in both inner loops
        fn(nets[path], real, syn0.clone().requires_grad_(True), labels, a.ipc, a.inner_loop)
    with torch.no_grad():
        net_rel = max(float((z - o).norm() / o.norm()) for z, o in zip(nets["zoo"].parameters(),
                                                                         nets["original"].parameters()))
    print(f"networks after one iteration: largest relative parameter difference {net_rel:.1e}")

    def run(fn, net_template):
        return lambda: fn(copy.deepcopy(net_template), real, syn0.clone().requires_grad_(True), labels, a.ipc,
                          a.inner_loop)

    times = timeit_alternating({"original": run(original_iteration, net0), "zoo": run(zoo_it, net_cl)},
                               device=device, warmup=a.warmup, iters=a.iters)
    t_orig, t_zoo = times["original"], times["zoo"]
    print(f"original: {t_orig['p50'] / 1e3:.2f} s per outer iteration", flush=True)
    print(f"zoo:      {t_zoo['p50'] / 1e3:.2f} s per outer iteration", flush=True)
    rows = []
    for name, t in (("original", t_orig), ("zoo", t_zoo)):
        rows.append({"path": name, "seconds_per_outer_iteration": t["p50"] / 1e3, "p90_s": t["p90"] / 1e3,
                     "min_s": t["min"] / 1e3, "iters": t["iters"], "speedup_vs_original": t_orig["p50"] / t["p50"],
                     "ipc": a.ipc, "batch_real": a.batch_real, "inner_loop": a.inner_loop})
    speedup = t_orig["p50"] / t_zoo["p50"]
    goal = 3.0 if device.type == "cuda" else 1.5
    parts, part_peak, peak = {}, {}, {}
    if a.parts:
        peak_tflops, peak_source, _ = peak_for(device, "32")
        peak = {"peak_tflops": peak_tflops, "peak_source": peak_source}
        for r in part_timings(net0, net_cl, real, syn0, labels, a.ipc, a.inner_loop, device, a.warmup, a.iters,
                              cuda_graph):
            parts.setdefault(r["part"], {})[r["path"]] = round(r["seconds"], 3)
            part_peak.setdefault(r["part"], {"flops": r["flops"]})[r["path"]] = round(
                r["flops"] / r["seconds"] / 1e12 / peak_tflops, 3)
        print(f"parts (seconds): {parts}")
        print(f"parts (fraction of the fp32 matmul peak, {peak_tflops:.3f} TFLOP/s, {peak_source}): {part_peak}")
    path = save("doorping", {
        "description": f"DC outer iteration (matching over 10 classes + image step + {a.inner_loop}-epoch inner "
                       f"loop), ConvNet, ipc {a.ipc}, {a.batch_real} real images per class ({source}); zoo "
                       f"(channels-last, compiled real-image gradients and inner loop"
                       f"{', inner loop replayed from a CUDA graph' if cuda_graph and device.type == 'cuda' else ''})"
                       f" vs the authors' per-class loop",
        "rows": rows,
        "summary": {"speedup": speedup, "goal": goal, "meets_goal": speedup >= goal, "loss_original": float(ref),
                    "loss_zoo": float(got), "loss_relative_difference": rel,
                    "image_gradient_relative_difference": grad_rel,
                    "network_relative_difference_after_iteration": net_rel,
                    **({"part_seconds": parts, "part_fraction_of_peak": part_peak, **peak} if parts else {})},
    }, device=device)
    print(f"speedup {speedup:.2f}x (goal {goal}x); wrote {path}")


if __name__ == "__main__":
    main()
