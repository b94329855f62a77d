"""optbook.tasks.vit_digits: patches, the model's shapes, and reproducible training."""

import pytest
import torch
import torch.nn.functional as F

import optbook
from optbook.tasks import vit_digits as vd


def test_patchify_by_hand_and_against_unfold():
    img = torch.arange(64.0).reshape(1, 8, 8)
    p = vd.patchify(img, 2)
    assert p.shape == (1, 16, 4)
    assert p[0, 0].tolist() == [0, 1, 8, 9] and p[0, 1].tolist() == [2, 3, 10, 11] and p[0, 4].tolist() == [16, 17, 24, 25]
    x = torch.randn(3, 8, 8, dtype=torch.float64)
    for patch in (2, 4):
        unfolded = F.unfold(x[:, None], kernel_size=patch, stride=patch).transpose(1, 2)
        assert torch.equal(vd.patchify(x, patch), unfolded)
    with pytest.raises(ValueError, match="must divide"):
        vd.patchify(x, 3)
    with pytest.raises(ValueError, match="batch, H, W"):
        vd.patchify(x[0], 2)


def test_config_and_model_shapes():
    assert vd.ViTConfig().n_patches == 16 and vd.ViTConfig(patch=4).n_patches == 4
    with pytest.raises(ValueError, match="divide the image side"):
        vd.ViTConfig(patch=3)
    with pytest.raises(ValueError, match="divisible"):
        vd.ViTConfig(d_model=10, n_heads=4)
    torch.manual_seed(0)
    model = vd.TinyViT(vd.ViTConfig(patch=4)).double()
    assert model(torch.randn(5, 8, 8, dtype=torch.float64)).shape == (5, 10)


def test_optimizers_and_reproducible_training():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    assert isinstance(vd.make_optimizer("adafactor", p), optbook.Adafactor)
    with pytest.raises(ValueError, match="learning rate"):
        vd.make_optimizer("adamw", p, lr=-1.0)
    with pytest.raises(ValueError, match="must be one of"):
        vd.make_optimizer("lion", p)
    a = vd.train_vit("adamw", 0, 3, lr=1e-3, show_progress=False)
    assert a == vd.train_vit("adamw", 0, 3, lr=1e-3, show_progress=False)
    assert len(a["train_loss"]) == 3 and 0.0 <= a["test_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="steps"):
        vd.train_vit("adamw", 0, 0, lr=1e-3)
