"""Diffusion-DPO loss (train_dpo/loss.py): ln 2 at initialisation, the beta = beta_dpo / 2 relation
to the reference implementation, options and gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from train_dpo.loss import diffusion_dpo_loss, diffusion_dpo_loss_from_errors, per_sample_mse, sft_loss


def _preds(b=3, shape=(2, 4, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *shape, generator=g) for _ in range(6)]


def test_policy_equal_reference_gives_exactly_ln2():
    pw, pl, _, _, tw, tl = _preds()
    out = diffusion_dpo_loss(pw, pl, pw.clone(), pl.clone(), tw, tl, beta=1234.5)
    assert torch.equal(out.logits, torch.zeros(3))
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == torch.log(torch.tensor(2.0)).item()
    assert abs(out.loss.item() - math.log(2.0)) < 1e-7
    assert out.accuracy.item() == 0.0 and out.reward_margin.item() == 0.0


def test_matches_salesforce_diffusion_dpo_with_beta_dpo_twice_beta():
    """Reference: SalesforceAIResearch/DiffusionDPO train.py (errors = mean over non-batch dims)."""
    pw, pl, rw, rl, tw, tl = _preds(b=5)
    beta = 0.7
    out = diffusion_dpo_loss(pw, pl, rw, rl, tw, tl, beta=beta)
    # their code, with model_pred = cat(w, l), target = cat(tw, tl):
    model_losses = (torch.cat([pw, pl]) - torch.cat([tw, tl])).pow(2).mean(dim=[1, 2, 3, 4])
    model_losses_w, model_losses_l = model_losses.chunk(2)
    model_diff = model_losses_w - model_losses_l
    ref_losses = (torch.cat([rw, rl]) - torch.cat([tw, tl])).pow(2).mean(dim=[1, 2, 3, 4])
    ref_losses_w, ref_losses_l = ref_losses.chunk(2)
    ref_diff = ref_losses_w - ref_losses_l
    beta_dpo = 2 * beta
    inside_term = -0.5 * beta_dpo * (model_diff - ref_diff)
    torch.testing.assert_close(out.logits, inside_term, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.loss, -F.logsigmoid(inside_term).mean(), rtol=1e-6, atol=1e-7)
    assert out.accuracy.item() == pytest.approx((inside_term > 0).float().mean().item())
    torch.testing.assert_close(out.reward_w - out.reward_l, out.logits)
    torch.testing.assert_close(out.err_w, model_losses_w)
    torch.testing.assert_close(out.err_ref_l, ref_losses_l)


def test_better_winner_denoising_gives_positive_logits_and_lower_loss():
    err_ref = torch.tensor([1.0, 1.0])
    out = diffusion_dpo_loss_from_errors(
        torch.tensor([0.5, 0.9]), torch.tensor([1.5, 1.0]), err_ref, err_ref, beta=2.0
    )
    torch.testing.assert_close(out.logits, torch.tensor([2.0, 0.2]))
    assert out.accuracy.item() == 1.0 and out.loss.item() < math.log(2)
    assert out.reward_margin.item() == pytest.approx(1.1)


def test_label_smoothing_and_hinge():
    z = torch.tensor([0.3, -1.2])
    e0 = torch.zeros(2)
    # choose errors so that logits == z with beta 1: err_ref_w - err_w = z, loser term 0
    out = diffusion_dpo_loss_from_errors(-z, e0, e0, e0, beta=1.0, label_smoothing=0.1)
    expected = -(0.9) * F.logsigmoid(z) - 0.1 * F.logsigmoid(-z)
    torch.testing.assert_close(out.loss, expected.mean())
    torch.testing.assert_close(out.losses, expected)  # per pair (validation averages these)
    out = diffusion_dpo_loss_from_errors(-z, e0, e0, e0, beta=1.0, loss_type="hinge")
    torch.testing.assert_close(out.loss, torch.relu(1 - z).mean())
    torch.testing.assert_close(out.losses, torch.tensor([0.7, 2.2]))


def test_gradients_reach_policy_only():
    pw, pl, rw, rl, tw, tl = _preds(b=2)
    pw.requires_grad_(True)
    pl.requires_grad_(True)
    rw.requires_grad_(True)
    out = diffusion_dpo_loss(pw, pl, rw, rl, tw, tl)
    out.loss.backward()
    assert pw.grad is not None and pl.grad is not None and pw.grad.abs().sum() > 0
    assert rw.grad is None


def test_bad_arguments():
    e = torch.ones(2)
    with pytest.raises(ValueError, match="beta"):
        diffusion_dpo_loss_from_errors(e, e, e, e, beta=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        diffusion_dpo_loss_from_errors(e, e, e, e, label_smoothing=0.5)
    with pytest.raises(ValueError, match="loss_type"):
        diffusion_dpo_loss_from_errors(e, e, e, e, loss_type="ipo")
    with pytest.raises(ValueError, match="shape"):
        diffusion_dpo_loss_from_errors(e, torch.ones(3), e, e)
    with pytest.raises(ValueError, match="shapes differ"):
        per_sample_mse(torch.ones(2, 3), torch.ones(2, 4))
    # bf16 inputs are reduced in float32
    assert per_sample_mse(torch.ones(2, 3, dtype=torch.bfloat16), torch.zeros(2, 3)).dtype == torch.float32


def test_sft_loss_is_the_winner_mse_by_hand():
    """pred - target = [[1, 2, 3, 4], [0, 0, 0, 2]] -> per-sample mean of squares [7.5, 1.0], loss 4.25."""
    target = torch.tensor([[1.0, -1.0, 0.5, 2.0], [3.0, 3.0, 3.0, 3.0]]).view(2, 1, 1, 2, 2)
    diff = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 2.0]]).view(2, 1, 1, 2, 2)
    pred = (target + diff).requires_grad_(True)
    out = sft_loss(pred, target)
    torch.testing.assert_close(out.err_w, torch.tensor([7.5, 1.0]))
    assert out.loss.item() == 4.25 and out.loss.dtype == torch.float32
    assert out.metrics() == {"sft_loss": 4.25, "err_w": 4.25}
    out.loss.backward()  # d/dpred mean_B mean_N diff^2 = 2 diff / (B N)
    torch.testing.assert_close(pred.grad, 2 * diff / 8)
    with pytest.raises(ValueError, match="shapes differ"):
        sft_loss(pred[:1], target)
