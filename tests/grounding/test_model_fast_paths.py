"""The fast paths of Med-GLIP compute the same function as the plain ones: fused attention (SDPA) against the
explicit softmax, channels-last convolutions against contiguous ones (outputs, loss and gradients)."""
from __future__ import annotations

import math

import pytest
import torch
from toy_grounding_batch import PHRASES, toy_images
from toy_grounding_batch import toy_targets as _targets

from grounding.model import build_grounder, tiny_config
from grounding.model.fusion import CrossAttention

pytestmark = pytest.mark.usefixtures("one_thread")


def _images() -> torch.Tensor:
    """The toy batch plus a little seeded noise (the layouts are compared on non-constant inputs)."""
    return toy_images(noise=0.05)


def _reference_attention(attn: CrossAttention, x: torch.Tensor, context: torch.Tensor,
                         mask: torch.Tensor | None) -> torch.Tensor:
    """The textbook multi-head attention, written out: softmax(q k^T / sqrt(d) masked) v, then the output proj."""
    b, n, dim = x.shape
    h = attn.heads
    d = dim // h
    q = attn.q(x).view(b, n, h, d).transpose(1, 2)  # (B, h, N, d)
    k, v = attn.kv(context).view(b, -1, 2, h, d).permute(2, 0, 3, 1, 4)  # each (B, h, S, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, N, S)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ v  # (B, h, N, d)
    return attn.out(out.transpose(1, 2).reshape(b, n, dim))


@pytest.mark.parametrize("with_mask", [False, True])
def test_cross_attention_equals_the_explicit_softmax_attention(with_mask: bool) -> None:
    torch.manual_seed(0)
    attn = CrossAttention(32, 2)
    x, context = torch.randn(3, 7, 32), torch.randn(3, 5, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1]], dtype=torch.bool) if with_mask else None
    got = attn(x, context, mask)
    expected = _reference_attention(attn, x, context, mask)
    assert got.shape == (3, 7, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # and the gradients of the inputs agree too (training goes through the fused kernel's backward)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    attn(x1, context, mask).square().sum().backward()
    _reference_attention(attn, x2, context, mask).square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_channels_last_gives_the_same_outputs_loss_and_gradients() -> None:
    torch.manual_seed(0)
    fast = build_grounder(tiny_config(channels_last=True)).train()
    plain = build_grounder(tiny_config(channels_last=False)).train()
    plain.load_state_dict(fast.state_dict(), strict=True)  # the layout is no weight: same state dict keys
    prompts = fast.encode_prompts(PHRASES)
    outs = []
    for model in (fast, plain):
        torch.manual_seed(1)  # the same MLM masking in both
        out = model(_images(), prompts, torch.tensor([0, -1]), _targets())
        out.loss.backward()
        outs.append(out)
    a, b = outs
    # the option does take effect: the backbone's pyramid is channels-last in one model only (after the fusion's
    # token round trip both models' maps are channels-last anyway)
    with torch.no_grad():
        assert all(f.is_contiguous(memory_format=torch.channels_last) for f in fast.backbone(_images()))
        assert not any(f.is_contiguous(memory_format=torch.channels_last) for f in plain.backbone(_images()))
    for name in ("logits", "boxes", "centerness", "region_embeddings", "phrase_embeddings", "mask_logits",
                 "modality_logits"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-4, msg=name)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    grads_plain = dict(plain.named_parameters())
    for name, p in fast.named_parameters():
        q = grads_plain[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_channels_last_gives_the_same_outputs_in_eval_mode() -> None:
    torch.manual_seed(0)
    fast = build_grounder(tiny_config(channels_last=True)).eval()
    plain = build_grounder(tiny_config(channels_last=False)).eval()
    plain.load_state_dict(fast.state_dict(), strict=True)
    prompts = fast.encode_prompts(PHRASES)
    with torch.no_grad():
        a = fast(_images(), prompts)
        b = plain(_images(), prompts)
    for name in ("logits", "boxes", "centerness", "mask_logits", "modality_logits"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-4, msg=name)
    for fa, fb in zip(a.features, b.features):
        torch.testing.assert_close(fa, fb, rtol=1e-4, atol=1e-4)


def test_mixed_precision_auto_follows_native_bf16(tmp_path, monkeypatch) -> None:
    from grounding import precision
    from grounding.train_config import GroundingTrainConfig

    assert GroundingTrainConfig().mixed_precision == "auto"
    with_bf16, without = tmp_path / "bf16", tmp_path / "avx2"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert precision.cpu_has_native_bf16(with_bf16) and not precision.cpu_has_native_bf16(without)
    assert not precision.cpu_has_native_bf16(tmp_path / "missing")  # not Linux: no claim, float32
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert precision.resolve_mixed_precision("auto", cuda=False) == expected
        for forced in ("no", "bf16", "fp16"):  # an explicit choice is never changed
            assert precision.resolve_mixed_precision(forced, cuda=False) == forced
            assert not precision.own_autocast(forced, cuda=False)
            assert precision.accelerate_precision(forced, cuda=False) == forced
        # auto: the trainer autocasts itself where bf16 is native, and accelerate stays at float32 either way
        assert precision.own_autocast("auto", cuda=False) is native
        assert precision.accelerate_precision("auto", cuda=False) == "no"
