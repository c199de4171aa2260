"""TopK and ReLU+L1 SAEs: planted-feature recovery, AuxK, decoder constraints, save/load.

    $ python -m pytest tests/sae -q
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from clbench.errors import ClbenchError
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.sae.quality import sae_quality
from clbench.sae.relu_l1 import ReLUL1SAE, relu_l1_loss
from clbench.sae.topk import (SAEBase, TopK, TopKSAE, auxk_loss, dead_topk, normalized_mse,
                              sparse_t_dense)
from clbench.sae.train import SAETrainConfig, train_sae
from tests.sae.planted import max_cosines


@pytest.fixture(scope="module")
def trained(planted: tuple[Tensor, Tensor]) -> tuple[SAEBase, dict]:
    torch.set_num_threads(1)
    x, _ = planted
    cfg = SAETrainConfig(n_latents=128, k=4, steps=1200, lr=3e-3, batch_size=512, dead_steps=50)
    return train_sae(x, cfg)


def test_topk_recovers_planted_features(planted: tuple[Tensor, Tensor], trained) -> None:
    (x, dictionary), (sae, stats) = planted, trained
    cos, _ = max_cosines(dictionary, sae.W_dec.detach())
    assert (cos > 0.9).float().mean() >= 0.9, cos
    q = sae_quality(sae, x)
    assert q["fvu"] < 0.1 and q["l0"] == pytest.approx(4.0)
    assert stats["loss"][-1] < stats["loss"][0]


def test_decoder_unit_norm_after_training(trained) -> None:
    sae, _ = trained
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.n_latents))


@pytest.mark.parametrize("auxk_coeff", [0.0, 1 / 32])
def test_auxk_revives_dead_latents(planted: tuple[Tensor, Tensor], auxk_coeff: float) -> None:
    x, _ = planted
    x = x[:4096]
    sae = TopKSAE(32, 64, 4, seed=0)
    sae.init_b_pre(x)
    with torch.no_grad():  # half the encoder rows ~0: those latents never win the top-k
        sae.W_enc[32:] *= 1e-3
    assert sae_quality(sae, x)["dead_fraction"] == 0.5
    cfg = SAETrainConfig(n_latents=64, k=4, steps=400, lr=3e-3, batch_size=512, dead_steps=10,
                         auxk_coeff=auxk_coeff)
    train_sae(x, cfg, sae=sae)
    dead = sae_quality(sae, x)["dead_fraction"]
    if auxk_coeff:
        assert dead < 0.15
    else:
        assert dead == 0.5


def test_remove_parallel_grad_leaves_orthogonal_part() -> None:
    sae = TopKSAE(8, 20, 3, seed=0)
    g = torch.randn(20, 8)
    sae.W_dec.grad = g.clone()
    sae.remove_parallel_grad_()
    w = sae.W_dec.detach()
    torch.testing.assert_close((sae.W_dec.grad * w).sum(dim=1), torch.zeros(20))
    parallel = (g * w).sum(dim=1, keepdim=True) * w  # unit-norm rows
    torch.testing.assert_close(sae.W_dec.grad + parallel, g)


def test_sparse_path_matches_dense_autograd() -> None:
    """The sparse forward/backward equals the plain dense formulas, gradients included."""
    torch.manual_seed(0)
    sae = TopKSAE(16, 40, 5, seed=1).double()
    with torch.no_grad():
        sae.b_pre.normal_()
        sae.b_enc.normal_(std=0.1)
    x = torch.randn(30, 16, dtype=torch.double, requires_grad=True)
    target = torch.randn(30, 16, dtype=torch.double)

    def loss_of(x_hat: Tensor, z: Tensor) -> Tensor:
        return normalized_mse(x_hat, target) + 1e-2 * z.pow(2).sum()

    x_hat, z, pre = sae(x)
    grads = torch.autograd.grad(loss_of(x_hat, z), [x, *sae.parameters()])
    pre_ref = (x - sae.b_pre) @ sae.W_enc.T + sae.b_enc
    z_ref = TopK(5)(pre_ref)
    ref = torch.autograd.grad(loss_of(z_ref @ sae.W_dec + sae.b_pre, z_ref),
                              [x, *sae.parameters()])
    torch.testing.assert_close(pre, pre_ref.detach())
    torch.testing.assert_close(z, z_ref)
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want)


def test_sparse_t_dense_equals_dense_product() -> None:
    idx = torch.tensor([[0, 3], [3, 1], [0, 1]])
    vals = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    dense = torch.randn(3, 4)
    s = torch.zeros(3, 5).scatter_(1, idx, vals)
    torch.testing.assert_close(sparse_t_dense(idx, vals, dense, 5), s.T @ dense)


def test_normalized_mse_is_fvu() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # column means 1, 2: total variance 4
    x_hat = torch.tensor([[1.0, 1.0], [2.0, 2.0]])  # squared error 1 + 1
    assert normalized_mse(x_hat, x).item() == pytest.approx(0.5)
    assert normalized_mse(x, x).item() == 0.0
    assert normalized_mse(x.mean(0).expand(2, 2), x).item() == pytest.approx(1.0)


def test_auxk_loss_and_dead_topk() -> None:
    pre = torch.tensor([[5.0, -1.0, 0.5, 0.2], [4.0, 0.3, -2.0, 0.1]])
    dead = torch.tensor([False, True, True, False])
    vals, idx = dead_topk(pre, dead, k_aux=8)  # capped at the 2 dead latents
    assert idx.shape == (2, 2) and set(idx.flatten().tolist()) <= {1, 2}
    residual = torch.randn(6, 3)
    assert auxk_loss(residual, residual).item() == 0.0
    assert auxk_loss(torch.zeros(6, 3), residual).item() == pytest.approx(
        normalized_mse(torch.zeros(6, 3), residual).item() / 32)


def test_dead_latent_counter_moves_only_in_train_mode() -> None:
    sae = TopKSAE(8, 16, 2, seed=0)
    x = torch.randn(4, 8)
    sae.eval()
    sae(x)
    assert sae.steps_since_fired.sum() == 0
    sae.train()
    _, z, _ = sae(x)
    sae(x)
    fired = (z > 0).any(dim=0)
    assert (sae.steps_since_fired[fired] == 0).all()
    assert (sae.steps_since_fired[~fired] == 2).all()


def test_init_b_pre_geometric_median_resists_outliers() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(99, 4, generator=g) * 0.1 + 1.0, torch.full((1, 4), 1000.0)])
    sae = TopKSAE(4, 8, 2)
    sae.init_b_pre(x)
    assert (sae.b_pre - 1.0).abs().max() < 0.1
    sae.init_b_pre(x, method="mean")
    torch.testing.assert_close(sae.b_pre.detach(), x.mean(0))


@pytest.mark.parametrize("make", [lambda: TopKSAE(12, 30, 4, seed=0),
                                  lambda: ReLUL1SAE(12, 30, seed=0),
                                  lambda: TopKCrosscoder([5, 7], 30, 4, seed=0)],
                         ids=["topk", "relu_l1", "crosscoder"])
def test_save_load_round_trip(tmp_path, make) -> None:
    sae = make()
    x = torch.randn(10, 12)
    sae.train()
    sae(x)  # moves steps_since_fired
    sae.eval()
    path = tmp_path / "sae.pt"
    sae.save(path)
    assert set(torch.load(path, weights_only=True)) == {"kind", "config", "state_dict"}
    loaded = type(sae).load(path)
    for got, want in zip(loaded(x), sae(x)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(loaded.steps_since_fired, sae.steps_since_fired)
    other = ReLUL1SAE if not isinstance(sae, ReLUL1SAE) else TopKSAE
    with pytest.raises(ClbenchError, match="holds a"):
        other.load(path)


def test_relu_l1_trains_and_loss_formula(planted: tuple[Tensor, Tensor]) -> None:
    x, _ = planted
    cfg = SAETrainConfig(n_latents=64, steps=300, lr=3e-3, batch_size=512, l1_coeff=1e-3)
    sae, stats = train_sae(x, cfg, kind="relu_l1")
    assert isinstance(sae, ReLUL1SAE)
    assert stats["loss"][-1] < 0.5 * stats["loss"][0]
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    x_hat, z = torch.zeros(2, 3), torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    x_ = torch.ones(2, 3)  # squared error 3 a row; |z| sums 3 and 3
    assert relu_l1_loss(x_hat, x_, z, 0.5).item() == pytest.approx(3 + 0.5 * 3)
    norms = torch.tensor([2.0, 1.0])  # weighted |z| sums 4 and 3
    assert relu_l1_loss(x_hat, x_, z, 0.5, norms).item() == pytest.approx(3 + 0.5 * 3.5)


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(ClbenchError, match="k <= n_latents"):
        TopKSAE(8, 4, 5)
    with pytest.raises(ClbenchError, match="unknown SAE kind"):
        train_sae(torch.randn(10, 4), SAETrainConfig(n_latents=8, k=2, steps=1), kind="jump")
    with pytest.raises(ClbenchError, match="batch_size"):
        SAETrainConfig(batch_size=0)


def test_default_lr_follows_scaling_law() -> None:
    assert SAETrainConfig(n_latents=2**14).resolved_lr() == pytest.approx(2e-4)
    assert SAETrainConfig(n_latents=2**12).resolved_lr() == pytest.approx(4e-4)


def test_frozen_sae_passes_gradient_to_its_input() -> None:
    """SAE-guided losses on a model's activations need d(loss)/dx through a frozen SAE."""
    sae = TopKSAE(8, 20, 3, seed=0).double().requires_grad_(False)
    x = torch.randn(5, 8, dtype=torch.double, requires_grad=True)
    x_hat, z, _ = sae(x)
    (grad,) = torch.autograd.grad(x_hat.pow(2).sum() + z.sum(), x)
    z_ref = TopK(3)((x - sae.b_pre) @ sae.W_enc.T + sae.b_enc)
    (want,) = torch.autograd.grad((z_ref @ sae.W_dec + sae.b_pre).pow(2).sum() + z_ref.sum(), x)
    torch.testing.assert_close(grad, want)
