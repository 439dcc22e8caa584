"""Diffusion-DPO loss on v-prediction errors (CogVideoX is a v-prediction model).

Source: Wallace et al., "Diffusion Model Alignment Using Direct Preference Optimization"
(Diffusion-DPO, arXiv 2311.12908), Eq. 14, and its reference implementation
(SalesforceAIResearch/DiffusionDPO, ``train.py``); applied to video by VideoGPA
(arXiv 2601.23286), which prefers the generated video with the best 3-D geometry consistency.

Definitions (per preference pair ``(x_w, x_l)`` sharing noise ``eps`` and timestep ``t``)::

    e_w     = mean_{F,C,H,W} (v_theta(x_w,t) - v_w)^2       policy error on the winner
    e_l     = mean_{F,C,H,W} (v_theta(x_l,t) - v_l)^2       policy error on the loser
    e_ref_w, e_ref_l                                         same with the frozen reference
    logits  = beta * ((e_ref_w - e_w) - (e_ref_l - e_l))
    loss    = -log sigmoid(logits)

``beta * (e_ref_w - e_w)`` is the implicit reward of the winner (how much better than the
reference the policy denoises it), likewise for the loser; ``logits`` is their difference, the
implicit reward margin, and ``logits > 0`` counts as a correct preference (implicit accuracy).

Relation of ``beta`` to Diffusion-DPO's ``beta_dpo``
----------------------------------------------------
The reference implementation computes, with errors averaged over all non-batch dimensions
(``(pred - target).pow(2).mean(dim=[1, 2, 3])``)::

    model_diff  = e_w - e_l
    ref_diff    = e_ref_w - e_ref_l
    inside_term = -0.5 * beta_dpo * (model_diff - ref_diff)
    loss        = -logsigmoid(inside_term)

Expanding, ``inside_term = -0.5 * beta_dpo * ((e_w - e_ref_w) - (e_l - e_ref_l))
= 0.5 * beta_dpo * ((e_ref_w - e_w) - (e_ref_l - e_l))``, which is ``logits`` above with
``beta = beta_dpo / 2``. So ``beta = 1.0`` here is ``beta_dpo = 2`` there (their SD1.5 runs use
``beta_dpo = 5000``: ``beta = 2500``). The paper's ``T * omega(lambda_t)`` weighting is folded into
``beta_dpo`` in their code, as here.

v-prediction: the errors are on the velocity ``v = sqrt(abar_t) * eps - sqrt(1 - abar_t) * x_0``
(``scheduler.get_velocity``). This equals the x0-error weighted by ``1 / (1 - abar_t)`` that the
CogVideoX fine-tuning scripts use (``x0_pred - x0 = -sqrt(1 - abar_t) * (v_pred - v)``).

Options: ``label_smoothing = eps`` gives the conservative DPO loss
``-(1 - eps) log sigma(z) - eps log sigma(-z)`` (Mitchell, 2023, "A note on DPO with noisy
preferences"); ``loss_type="hinge"`` gives ``relu(1 - z)`` (SLiC-style hinge on the same logits).

Supervised fine-tuning (SFT, the paper's ablation): :func:`sft_loss` trains on the winners only
with the plain v-prediction loss ``mean_B e_w`` (no loser, no reference), as the diffusers
CogVideoX LoRA fine-tuning does (``examples/cogvideo/train_cogvideox_lora.py``: MSE between the
model output and ``scheduler.get_velocity``, there in x0 form with weight ``1 / (1 - abar_t)``,
which is the same quantity, see above).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DPOLossOutput",
    "SFTLossOutput",
    "per_sample_mse",
    "diffusion_dpo_loss",
    "diffusion_dpo_loss_from_errors",
    "sft_loss",
]

LOSS_TYPES = ("sigmoid", "hinge")


@dataclass
class DPOLossOutput:
    """Result of :func:`diffusion_dpo_loss`. All tensors are float32.

    Attributes:
        loss: scalar, mean over the batch (the value to back-propagate).
        losses: ``[B]`` per-pair loss of the chosen ``loss_type`` / ``label_smoothing``
            (``loss = losses.mean()``).
        logits: ``[B]`` ``beta * ((e_ref_w - e_w) - (e_ref_l - e_l))`` (= reward margin per pair).
        reward_margin: scalar, ``logits.mean()`` (detached).
        accuracy: scalar in [0, 1], fraction of pairs with ``logits > 0`` (detached).
        reward_w, reward_l: ``[B]`` implicit rewards ``beta * (e_ref - e)`` (detached).
        err_w, err_l: ``[B]`` policy errors (``err_w``/``err_l`` keep the graph of the inputs).
        err_ref_w, err_ref_l: ``[B]`` reference errors.
    """

    loss: torch.Tensor
    losses: torch.Tensor
    logits: torch.Tensor
    reward_margin: torch.Tensor
    accuracy: torch.Tensor
    reward_w: torch.Tensor
    reward_l: torch.Tensor
    err_w: torch.Tensor
    err_l: torch.Tensor
    err_ref_w: torch.Tensor
    err_ref_l: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Plain floats for logging: loss, reward margin, accuracy, rewards and batch-mean errors."""
        return {
            "loss": float(self.loss.detach()),
            "reward_margin": float(self.reward_margin),
            "accuracy": float(self.accuracy),
            "reward_w": float(self.reward_w.mean()),
            "reward_l": float(self.reward_l.mean()),
            "err_w": float(self.err_w.detach().mean()),
            "err_l": float(self.err_l.detach().mean()),
            "err_ref_w": float(self.err_ref_w.detach().mean()),
            "err_ref_l": float(self.err_ref_l.detach().mean()),
        }


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every dimension but the first, computed in float32.

    Args:
        pred, target: ``[B, ...]`` (e.g. ``[B, F, C, H, W]`` velocity predictions/targets), any float
            dtype; same shape.

    Returns:
        float32 ``[B]``.

    Raises:
        ValueError: shapes differ or the tensors have no batch dimension.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() < 1:
        raise ValueError("pred needs a batch dimension")
    diff = pred.float() - target.float()
    return diff.pow(2).reshape(diff.shape[0], -1).mean(dim=1)


def diffusion_dpo_loss_from_errors(
    err_w: torch.Tensor,
    err_l: torch.Tensor,
    err_ref_w: torch.Tensor,
    err_ref_l: torch.Tensor,
    beta: float = 1.0,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> DPOLossOutput:
    """Diffusion-DPO loss from per-sample errors (see the module docstring for the formula).

    Args:
        err_w, err_l: ``[B]`` policy errors on winners / losers (gradients flow through them).
        err_ref_w, err_ref_l: ``[B]`` reference errors (treated as constants: detached).
        beta: KL-regularisation strength; equals Diffusion-DPO's ``beta_dpo / 2`` (> 0).
        label_smoothing: conservative-DPO ``eps`` in [0, 0.5); 0 is the plain DPO loss.
        loss_type: ``"sigmoid"`` (DPO) or ``"hinge"``.

    Returns:
        :class:`DPOLossOutput`.

    Raises:
        ValueError: bad ``beta``, ``label_smoothing`` or ``loss_type``, or mismatched shapes.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    shapes = {tuple(t.shape) for t in (err_w, err_l, err_ref_w, err_ref_l)}
    if len(shapes) != 1:
        raise ValueError(f"error tensors must share one shape [B], got {sorted(shapes)}")
    err_w, err_l = err_w.float(), err_l.float()
    err_ref_w, err_ref_l = err_ref_w.detach().float(), err_ref_l.detach().float()

    logits = beta * ((err_ref_w - err_w) - (err_ref_l - err_l))
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(logits)
        if label_smoothing > 0:
            losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    else:
        losses = torch.relu(1.0 - logits)
    with torch.no_grad():
        reward_w = beta * (err_ref_w - err_w.detach())
        reward_l = beta * (err_ref_l - err_l.detach())
        accuracy = (logits.detach() > 0).float().mean()
        margin = logits.detach().mean()
    return DPOLossOutput(
        loss=losses.mean(),
        losses=losses,
        logits=logits,
        reward_margin=margin,
        accuracy=accuracy,
        reward_w=reward_w,
        reward_l=reward_l,
        err_w=err_w,
        err_l=err_l,
        err_ref_w=err_ref_w,
        err_ref_l=err_ref_l,
    )


def diffusion_dpo_loss(
    pred_w: torch.Tensor,
    pred_l: torch.Tensor,
    ref_pred_w: torch.Tensor,
    ref_pred_l: torch.Tensor,
    target_w: torch.Tensor,
    target_l: torch.Tensor,
    beta: float = 1.0,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> DPOLossOutput:
    """Diffusion-DPO loss from v-predictions and v-targets.

    Args:
        pred_w, pred_l: policy (LoRA on) v-predictions ``[B, F, C, H, W]`` for winners / losers.
        ref_pred_w, ref_pred_l: reference (LoRA off) v-predictions, same shape (no grad needed).
        target_w, target_l: v-targets ``scheduler.get_velocity(x0, noise, t)``, same shape. Winner
            and loser of a pair must share ``noise`` and ``t``.
        beta, label_smoothing, loss_type: see :func:`diffusion_dpo_loss_from_errors`.

    Returns:
        :class:`DPOLossOutput`; errors are means over ``(F, C, H, W)`` in float32.

    At initialisation (policy == reference) ``logits`` is exactly 0 and the loss is ``ln 2``.
    """
    return diffusion_dpo_loss_from_errors(
        per_sample_mse(pred_w, target_w),
        per_sample_mse(pred_l, target_l),
        per_sample_mse(ref_pred_w, target_w),
        per_sample_mse(ref_pred_l, target_l),
        beta=beta,
        label_smoothing=label_smoothing,
        loss_type=loss_type,
    )


@dataclass
class SFTLossOutput:
    """Result of :func:`sft_loss`. Tensors are float32.

    Attributes:
        loss: scalar ``err_w.mean()`` (the value to back-propagate).
        err_w: ``[B]`` policy v-prediction errors on the winners (keeps the graph).
    """

    loss: torch.Tensor
    err_w: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Plain floats for logging: ``sft_loss`` and the batch-mean winner error ``err_w``."""
        return {"sft_loss": float(self.loss.detach()), "err_w": float(self.err_w.detach().mean())}


def sft_loss(pred_w: torch.Tensor, target_w: torch.Tensor) -> SFTLossOutput:
    """Supervised v-prediction loss on the winners (SFT baseline of the DPO objective).

    Args:
        pred_w: policy (LoRA on) v-predictions ``[B, F, C, H, W]`` of the winners, any float dtype.
        target_w: v-targets ``scheduler.get_velocity(x0_w, noise, t)``, same shape.

    Returns:
        :class:`SFTLossOutput` with ``loss = mean_B mean_{F,C,H,W} (pred_w - target_w)^2`` (float32).

    Raises:
        ValueError: shapes differ (see :func:`per_sample_mse`).
    """
    err_w = per_sample_mse(pred_w, target_w)
    return SFTLossOutput(loss=err_w.mean(), err_w=err_w)
