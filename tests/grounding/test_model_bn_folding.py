"""Batch-norm folding (the inference fast path): same outputs, batch norms gone, unsafe cases refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from toy_grounding_batch import PHRASES, toy_images

from grounding.checkpoint import load_grounding_checkpoint, save_grounding_checkpoint
from grounding.data import PhraseVocabulary
from grounding.model import build_grounder, tiny_config
from grounding.model.bn_folding import FoldingError, fold_batch_norms


def _randomise_statistics(module: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial running statistics and affine parameters (fresh ones are the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen))
                m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.1)
                m.weight.copy_(torch.randn(c, generator=gen))
                m.bias.copy_(torch.randn(c, generator=gen))


class _Net(nn.Module):
    """conv -> bn -> relu twice, a residual, a depthwise conv with bias, a trailing batch norm after an add."""

    def __init__(self, leak_first_conv: bool = False) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.b3 = nn.BatchNorm2d(8)  # after an add: no conv to take it
        self.leak = leak_first_conv

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y1 = self.c1(x)
        h = torch.relu(self.b1(y1))
        h = h + torch.relu(self.b2(self.c2(h)))
        out = self.b3(h + 1.0)
        return [out, out + y1] if self.leak else [out]  # leak: c1's raw output is used beyond its batch norm


def test_folding_keeps_outputs_and_removes_the_batch_norms() -> None:
    torch.manual_seed(0)
    net = _Net()
    _randomise_statistics(net)
    net.eval()
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        before = net(x)[0]
    assert fold_batch_norms(net) == 2
    assert isinstance(net.b1, nn.Identity) and isinstance(net.b2, nn.Identity)
    assert isinstance(net.b3, nn.BatchNorm2d)  # not after a conv: kept
    assert net.c1.bias is not None
    with torch.no_grad():
        after = net(x)[0]
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert (before - after).abs().max() < 1e-4 * before.abs().max()


def test_a_conv_output_used_elsewhere_is_refused_and_nothing_changes() -> None:
    net = _Net(leak_first_conv=True)
    _randomise_statistics(net)
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(FoldingError, match="changed output"):
        fold_batch_norms(net)
    assert isinstance(net.b1, nn.BatchNorm2d)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_training_mode_is_refused() -> None:
    with pytest.raises(FoldingError, match="eval mode"):
        fold_batch_norms(_Net().train())


def test_timm_batch_norm_act_keeps_its_activation() -> None:
    """timm's BatchNormAct2d activates after normalising: folding keeps the activation (negative outputs stay 0)."""
    import timm

    trunk = timm.create_model("test_efficientnet", pretrained=False, features_only=True)
    _randomise_statistics(trunk)
    trunk.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = trunk(x)
    assert fold_batch_norms(trunk) > 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules())
    with torch.no_grad():
        after = trunk(x)
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-4 * max(a.abs().max(), 1.0)


def test_folded_medglip_predicts_the_same_and_refuses_training_and_saving(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_grounder(tiny_config())
    _randomise_statistics(model.backbone.trunk)
    save_grounding_checkpoint(tmp_path / "ckpt", model, PhraseVocabulary())
    images = toy_images(noise=0.1)

    plain, _ = load_grounding_checkpoint(tmp_path / "ckpt", fold_batch_norms=False)
    folded, _ = load_grounding_checkpoint(tmp_path / "ckpt")  # the default folds
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.backbone.trunk.modules())
    with torch.no_grad():
        a = plain(images, plain.encode_prompts(PHRASES))
        b = folded(images, folded.encode_prompts(PHRASES))
    assert (a.logits - b.logits).abs().max() < 1e-3
    assert (a.boxes - b.boxes).abs().max() < 1e-4
    assert (a.mask_logits - b.mask_logits).abs().max() < 1e-3

    folded.eval()  # eval stays allowed
    with pytest.raises(RuntimeError, match="folded"):
        folded.train()
    with pytest.raises(RuntimeError, match="folded"):
        folded.save_pretrained(tmp_path / "again")
    plain.train()  # the unfolded model trains as before
