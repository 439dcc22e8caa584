"""utils/tiny_linear_vae.py: the tiny CogVideoX VAE set to an exact linear autoencoder round-trips.

Checked against independent computations: nearest upsampling of the latent cells times ``Q`` (decoder),
cell means of the pixels (encoder followed by decoder), the orthogonal projection ``pinv(Q) Q`` (cycle).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from utils.tiny_linear_vae import make_linear_autoencoder_


@pytest.fixture(scope="module")
def linear_vae(tiny_models):
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX.from_pretrained(str(tiny_models["cogvideox-t2v"]), subfolder="vae").eval()
    return vae, make_linear_autoencoder_(vae, seed=3)


def _cells_to_pixels(z: torch.Tensor) -> torch.Tensor:
    """[B, C, 3, 8, 12] latent cells -> [B, C, 9, 64, 96]: frame 0 <- cell frame 0, 4 frames per later one."""
    z = torch.cat([z[:, :, :1], z[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
    return z.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)


def test_decoder_is_q_times_nearest_upsampling_and_encoder_projects(linear_vae):
    vae, q = linear_vae
    z = torch.randn(2, 4, 3, 8, 12, generator=torch.Generator().manual_seed(1)) * 1.3
    with torch.no_grad():
        video = vae.decode(z).sample
        posterior = vae.encode(video).latent_dist
    expected = torch.einsum("kc,bcthw->bkthw", q, _cells_to_pixels(z))
    torch.testing.assert_close(video, expected, atol=1e-5, rtol=0)
    projection = torch.linalg.pinv(q) @ q  # E(D(z)): z projected on the row space of Q
    torch.testing.assert_close(posterior.mean, torch.einsum("ij,bjthw->bithw", projection, z),
                               atol=1e-3, rtol=0)
    assert float(posterior.std.max()) < 1e-3  # near-deterministic posterior (random VAE: ~1)


def test_any_video_round_trips_to_its_cell_means(linear_vae):
    vae, _ = linear_vae
    x = torch.rand(1, 3, 9, 64, 96, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        back = vae.decode(vae.encode(x).latent_dist.mean).sample
    first = x[:, :, :1]
    rest = x[:, :, 1:].unflatten(2, (2, 4)).mean(dim=3)
    cells = torch.cat([first, rest], dim=2).unflatten(3, (8, 8)).unflatten(5, (12, 8)).mean(dim=(4, 6))
    torch.testing.assert_close(back, _cells_to_pixels(cells), atol=1e-3, rtol=0)
    assert abs(float(back.mean() - x.mean())) < 1e-4  # mean brightness survives exactly


def test_round_trip_option_changes_only_the_vae(tiny_models, tmp_path):
    from utils.tiny_models import build_tiny_cogvideox

    rt = build_tiny_cogvideox("cogvideox-t2v", tmp_path / "rt", seed=0, round_trip_vae=True)
    base = tiny_models["cogvideox-t2v"]
    for f in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (rt / f).read_bytes() == (base / f).read_bytes(), f
    vae_file = "vae/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(base / vae_file)), load_file(str(rt / vae_file))
    assert a.keys() == b.keys()
    assert not torch.equal(a["encoder.conv_out.conv.bias"], b["encoder.conv_out.conv.bias"])
