"""Numeric faults in the shared loop (grounding.loop.train_steps): a non-finite loss or gradient skips the step
with a warning and leaves the weights, the optimizer and the schedule alone; N in a row stop the run with a clear
error, and the newest checkpoint on disk is from before the faults."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from grounding.loop import LoopConfig, LoopState, NonFiniteTrainingError, checkpoint_dirs, save_checkpoint, train_steps


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward, infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _setup(tmp_path, bad_steps: set[int], where: str = "loss"):
    from accelerate import Accelerator

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    calls = {"n": 0, "weights": []}

    def forward(batch):
        calls["n"] += 1
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        if calls["n"] in bad_steps:
            if where == "loss":
                loss = loss * float("nan")
            else:  # a finite loss whose gradient overflows
                loss = _InfiniteGradient.apply(loss)
        calls["weights"].append(model.weight.detach().clone())
        return SimpleNamespace(loss=loss)

    return accelerator, model, optimizer, scheduler, loader, forward, calls


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_non_finite_step_is_skipped_and_changes_nothing(tmp_path, where):
    accelerator, model, optimizer, scheduler, loader, forward, calls = _setup(tmp_path, {3}, where)
    params = list(model.parameters())
    state = LoopState()
    with pytest.warns(RuntimeWarning, match="step 3 skipped: non-finite loss or gradient"):
        result = train_steps(accelerator, model, optimizer, scheduler, loader, params, forward,
                             LoopConfig(max_steps=6, grad_clip=0.0), state=state, progress=False)
    assert result.steps == 6 and result.skipped_steps == 1 and calls["n"] == 7
    # the weights seen by the call after the bad one are those the bad call saw: nothing was applied
    assert torch.equal(calls["weights"][2], calls["weights"][3])
    assert not torch.equal(calls["weights"][1], calls["weights"][2])
    assert scheduler.scheduler.last_epoch == 6  # the schedule stepped only on good steps
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if where == "gradient":
        assert torch.isfinite(forward(next(iter(loader))).loss)  # the fault was in the gradient only


def test_too_many_bad_steps_in_a_row_stop_and_keep_the_last_good_checkpoint(tmp_path):
    accelerator, model, optimizer, scheduler, loader, forward, _ = _setup(tmp_path, {5, 6, 7, 8})
    params = list(model.parameters())
    meta = {"config": {}, "data_fingerprint": "x"}
    saves = []

    def save(state):
        saves.append(state.step)
        save_checkpoint(accelerator, tmp_path, state, meta)

    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteTrainingError, match="3 optimizer steps in a row"):
        train_steps(accelerator, model, optimizer, scheduler, loader, params, forward,
                    LoopConfig(max_steps=12, grad_clip=1.0, save_every=2, max_bad_steps=3), save=save,
                    progress=False)
    assert saves == [2, 4]
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-0000002", "step-0000004"]
    # a bad step between good ones resets the count: 2 bad, 1 good, 2 bad never stops at 3
    accelerator, model, optimizer, scheduler, loader, forward, _ = _setup(tmp_path, {2, 3, 5, 6})
    with pytest.warns(RuntimeWarning):
        result = train_steps(accelerator, model, optimizer, scheduler, loader, list(model.parameters()), forward,
                             LoopConfig(max_steps=6, max_bad_steps=3), progress=False)
    assert result.skipped_steps == 4 and result.steps == 6
