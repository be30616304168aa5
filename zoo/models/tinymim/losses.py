"""TinyMIM's distillation targets and losses (paper Sec. 3.2; the relation loss as in the authors' code).

Relation distillation: at one block of each model, per head, over all N tokens (class token included),

    R_QK = softmax(Q K^T / sqrt(d)),   R_VV = softmax(V V^T / sqrt(d)),

where d is the head dimension *of the model that computes the relation* (teacher sqrt(64) = 8 for ViT-B/L, a
12-head ViT-T last block sqrt(16) = 4). The loss is KL(teacher || student) of each relation, summed over keys and
averaged over batch, heads and queries; total = KL_QK + KL_VV. Softmaxes run in float32 as log-softmax: the
authors take ``log`` of (autocast) probabilities, which is the same value without the underflow.

The two baselines of the paper's target study use the feature-distillation recipe of FD (Wei et al. 2022), which
the paper follows for feature targets: the teacher's tokens are whitened by a LayerNorm without affine
parameters, the student's pass through a linear projector to the teacher's width, and the loss is smooth-L1
(beta 2). ``cls`` applies it to the class token only, ``feature`` to every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ZooError


def relation_logits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a b^T / sqrt(d)`` for per-head tokens ``a, b: [B, H, N, d]`` -> ``[B, H, N, N]`` (pre-softmax relation)."""
    return (a @ b.transpose(-2, -1)) * a.shape[-1] ** -0.5


def relation_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) over the last axis, averaged over all other axes.

    Args:
        teacher_logits, student_logits: ``[B, H, N, N]`` relation logits (the same head count).
    Returns:
        scalar: ``mean_{b,h,i} sum_j t_ij (log t_ij - log s_ij)``.
    """
    if teacher_logits.shape != student_logits.shape:
        raise ZooError(f"teacher relation {tuple(teacher_logits.shape)} and student relation "
                       f"{tuple(student_logits.shape)} differ: build the student's relation block with the "
                       f"teacher's head count (last_block_heads) and give both models the same token count")
    log_t = teacher_logits.float().log_softmax(-1)
    log_s = student_logits.float().log_softmax(-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def relation_loss(teacher_qkv, student_qkv) -> dict[str, torch.Tensor]:
    """TinyMIM's loss from the per-head ``(q, k, v)`` of the teacher's and the student's relation blocks.

    Returns:
        ``{"qk": KL of the Q-K relations, "vv": KL of the V-V relations, "loss": their sum}`` (scalars).
    """
    tq, tk, tv = teacher_qkv
    sq, sk, sv = student_qkv
    qk = relation_kl(relation_logits(tq, tk), relation_logits(sq, sk))
    vv = relation_kl(relation_logits(tv, tv), relation_logits(sv, sv))
    return {"qk": qk, "vv": vv, "loss": qk + vv}


def whitened(tokens: torch.Tensor) -> torch.Tensor:
    """FD's target whitening: LayerNorm over channels without affine parameters. ``[..., D] -> [..., D]``."""
    return F.layer_norm(tokens.float(), tokens.shape[-1:], eps=1e-6)


def feature_loss(projected_student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 2) between projected student tokens and whitened teacher tokens, both ``[B, N, D_t]``
    (or ``[B, D_t]`` for class tokens); mean over all elements."""
    return F.smooth_l1_loss(projected_student.float(), whitened(teacher), beta=2.0)
