"""inference_autocast: bf16 answering with frozen weights cast once, flags restored, a no-op when disabled."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from grounding.precision import inference_autocast


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model[0].requires_grad_(False)  # frozen, like the LLM under LoRA
    return model


def test_answers_in_bf16_without_gradients_and_restores_the_flags() -> None:
    model, x = _model(), torch.rand(3, 8)
    before = [p.requires_grad for p in model.parameters()]
    with inference_autocast(model, "cpu", True):
        assert all(p.requires_grad for p in model.parameters())  # frozen ones marked: autocast caches their casts
        y = model(x)
        assert y.dtype == torch.bfloat16 and not y.requires_grad and y.grad_fn is None
    assert [p.requires_grad for p in model.parameters()] == before
    torch.testing.assert_close(y.float(), model(x).detach(), rtol=2e-2, atol=2e-2)


def test_the_flags_come_back_after_an_error() -> None:
    model = _model()
    with pytest.raises(RuntimeError, match="boom"), inference_autocast(model, "cpu", True):
        raise RuntimeError("boom")
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]


def test_disabled_is_a_no_op() -> None:
    model, x = _model(), torch.rand(3, 8)
    with inference_autocast(model, "cpu", False):
        y = model(x)
    assert y.dtype == torch.float32 and y.requires_grad  # grad mode untouched
