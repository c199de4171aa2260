"""TopK crosscoder: shared features across sources, per-source decoder norms, per-source loss."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from clbench.sae.crosscoder import TopKCrosscoder, crosscoder_loss
from clbench.sae.quality import sae_quality
from clbench.sae.topk import normalized_mse
from clbench.sae.train import SAETrainConfig, train_crosscoder
from tests.sae.planted import max_cosines, planted_codes, unit_dictionary

WIDTHS = (16, 12, 8)
# per-feature scale in each source: 6 features in source 0 only, 6 in source 1 only,
# 6 shared by all three sources at scales 2, 1, 0.5
SCALES = torch.tensor([[1.0, 0.0, 0.0]] * 6 + [[0.0, 1.0, 0.0]] * 6 + [[2.0, 1.0, 0.5]] * 6)


def planted_sources(n: int) -> tuple[list[Tensor], Tensor]:
    """Sources ``a^s = codes @ (scale_s * U_s)^T`` and the true concatenated directions."""
    codes = planted_codes(n, len(SCALES), 3, seed=2)
    dirs = [unit_dictionary(d, len(SCALES), seed=10 + s) * SCALES[:, s] for s, d in
            enumerate(WIDTHS)]
    return [codes @ d.T for d in dirs], torch.cat(dirs)  # [n, d_s] each; [sum d, 18]


@pytest.fixture(scope="module")
def trained() -> tuple[TopKCrosscoder, list[Tensor], Tensor]:
    torch.set_num_threads(1)
    xs, true_dirs = planted_sources(8192)
    cfg = SAETrainConfig(n_latents=36, k=3, steps=1500, lr=6e-3, batch_size=512, dead_steps=50)
    cc, _ = train_crosscoder(xs, cfg)
    return cc, xs, true_dirs


def test_crosscoder_recovers_shared_features(trained) -> None:
    cc, xs, true_dirs = trained
    cos, _ = max_cosines(true_dirs, cc.W_dec.detach())
    assert (cos > 0.9).float().mean() >= 0.9, cos
    q = sae_quality(cc, xs)
    assert all(q[f"fvu_source{s}"] < 0.15 for s in range(3)), q


def test_decoder_norms_follow_planted_scales(trained) -> None:
    """A feature only in source 0 has ~0 norm in the others; a shared one has norms
    proportional to its scales (2, 1, 0.5) / |(2, 1, 0.5)|."""
    cc, _, true_dirs = trained
    cos, match = max_cosines(true_dirs, cc.W_dec.detach())
    norms = cc.decoder_norms()
    assert norms.shape == (36, 3)
    torch.testing.assert_close(norms.pow(2).sum(dim=1), torch.ones(36))
    expected = SCALES / SCALES.norm(dim=1, keepdim=True)
    good = cos > 0.9
    assert (norms[match[good]] - expected[good]).abs().max() < 0.1


def test_crosscoder_loss_sums_per_source_fvu() -> None:
    x, x_hat = torch.randn(20, 7), torch.randn(20, 7)
    want = normalized_mse(x_hat[:, :3], x[:, :3]) + normalized_mse(x_hat[:, 3:], x[:, 3:])
    torch.testing.assert_close(crosscoder_loss(x_hat, x, [3, 4]), want)
    big = x.clone()
    big[:, 3:] *= 100.0  # rescaling one source leaves its FVU term unchanged
    scaled_hat = x_hat.clone()
    scaled_hat[:, 3:] *= 100.0
    torch.testing.assert_close(crosscoder_loss(scaled_hat, big, [3, 4]), want)


def test_crosscoder_takes_lists_and_concatenations() -> None:
    cc = TopKCrosscoder([4, 6], 20, 3, seed=0).eval()
    a, b = torch.randn(5, 4), torch.randn(5, 6)
    (a_hat, b_hat), f, pre = cc([a, b])
    x_hat, f2, _ = cc(torch.cat([a, b], dim=1))
    torch.testing.assert_close(torch.cat([a_hat, b_hat], dim=1), x_hat)
    torch.testing.assert_close(f, f2)
    torch.testing.assert_close(cc.encode([a, b]), f)
    assert f.shape == pre.shape == (5, 20) and ((f > 0).sum(dim=1) <= 3).all()
    with pytest.raises(ValueError, match="d_ins"):
        cc([b, a])
