"""The loss terms on hand-made tensors, and the cross-process gather of the contrastive loss (2 gloo processes)."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from grounding.model.losses import (
    alignment_focal_loss,
    gather_with_grad,
    hierarchy_consistency_loss,
    mask_loss,
    phrase_text_ids,
    region_phrase_contrastive_loss,
)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_hierarchy_term_penalises_lesions_scored_above_their_organ() -> None:
    # phrases: 0 organ, 1 lesion of 0, 2 unrelated organ; two locations
    logits = torch.tensor([[[_logit(0.5), _logit(0.8), 0.0], [_logit(0.6), _logit(0.2), 0.0]]])
    loss = hierarchy_consistency_loss(logits, [torch.tensor([-1, 0, -1])])
    assert math.isclose(loss.item(), (0.3 + 0.0) / 2, rel_tol=1e-5)
    assert hierarchy_consistency_loss(logits, [torch.tensor([-1, -1, -1])]) is None


def test_contrastive_targets_share_the_mass_between_equal_phrases() -> None:
    region = torch.tensor([[1.0, 0.0]])
    phrases = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    ids = phrase_text_ids([["heart", "lung"], ["Heart "]], 2, torch.device("cpu"))
    assert ids[0, 0] == ids[1, 0] and ids[0, 0] != ids[0, 1] and ids[1, 1] == -1
    flat_ids = torch.stack([ids[0, 0], ids[0, 1], ids[1, 0]])
    loss = region_phrase_contrastive_loss(region, flat_ids[:1], phrases, flat_ids, torch.tensor(10.0))
    log_p = F.log_softmax(10.0 * region @ phrases.T, dim=-1)[0]
    assert math.isclose(loss.item(), -(0.5 * log_p[0] + 0.5 * log_p[2]).item(), rel_tol=1e-5)


def test_alignment_loss_ignores_padding_tokens() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(1, 5, 4), torch.zeros(1, 5, 4, dtype=torch.bool)
    targets[0, 2, 1] = True
    valid = torch.tensor([[True, True, True, False]])
    base = alignment_focal_loss(logits, targets, valid, torch.tensor(1.0))
    changed = logits.clone()
    changed[..., 3] = 50.0
    assert torch.equal(alignment_focal_loss(changed, targets, valid, torch.tensor(1.0)), base)
    assert alignment_focal_loss(logits, targets, valid, torch.tensor(2.0)).item() == pytest.approx(base.item() / 2)


def test_mask_loss_is_small_for_a_right_mask_and_large_for_a_wrong_one() -> None:
    masks = torch.zeros(1, 16, 16)
    masks[0, 4:12, 4:12] = 1
    right = (F.adaptive_avg_pool2d(masks[:, None], (8, 8))[:, 0] * 2 - 1) * 20
    assert mask_loss(right, masks).item() < 0.01
    assert mask_loss(-right, masks).item() > 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    """Regions and phrases of a 2-process batch: process 0 holds 2 regions / 3 phrases, process 1 3 / 1."""
    g = torch.Generator().manual_seed(0)
    regions = torch.randn(5, 8, generator=g)
    phrases = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    phrase_ids = torch.tensor([11, 12, 13, 11])  # phrase 3 (process 1) has the same text as phrase 0
    region_ids = torch.tensor([11, 13, 12, 11, 11])
    return regions, region_ids, phrases, phrase_ids, [slice(0, 2), slice(2, 5)], [slice(0, 3), slice(3, 4)]


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on two cores
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        regions, region_ids, phrases, phrase_ids, region_parts, phrase_parts = _data()
        my_regions = regions[region_parts[rank]].clone().requires_grad_(True)
        my_phrases = phrases[phrase_parts[rank]].clone().requires_grad_(True)
        all_phrases = gather_with_grad(my_phrases)
        all_ids = gather_with_grad(phrase_ids[phrase_parts[rank]])
        loss = region_phrase_contrastive_loss(
            my_regions, region_ids[region_parts[rank]], all_phrases, all_ids, torch.tensor(5.0)
        )
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        # plain lists: shared-memory tensors would not outlive this process
        queue.put((rank, all_phrases.shape[0], total.item(), my_regions.grad.tolist(), my_phrases.grad.tolist()))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_contrastive_loss_gathers_phrases_and_gradients_across_processes() -> None:
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.start_processes(_worker, args=(2, _free_port(), queue), nprocs=2, start_method="spawn")
    results = {}
    for _ in range(2):
        rank, *rest = queue.get(timeout=60)
        results[rank] = rest

    regions, region_ids, phrases, phrase_ids, region_parts, phrase_parts = _data()
    regions, phrases = regions.clone().requires_grad_(True), phrases.clone().requires_grad_(True)
    reference = region_phrase_contrastive_loss(regions, region_ids, phrases, phrase_ids, torch.tensor(5.0))
    reference.backward()
    for rank in (0, 1):
        gathered, total, region_grad, phrase_grad = results[rank]
        assert gathered == 4  # both processes see all phrases, the padding of the shorter part removed
        # each process normalises by the mean region count, so the processes' losses add up to twice the loss of the
        # whole batch and DDP's gradient averaging (/2) gives the whole batch's gradient
        assert total == pytest.approx(2 * reference.item(), rel=1e-5)
        region_grad, phrase_grad = torch.tensor(region_grad), torch.tensor(phrase_grad)
        assert torch.allclose(region_grad, 2 * regions.grad[region_parts[rank]], atol=1e-6)
        # a process's phrases receive the gradient of the other process's regions too
        assert torch.allclose(phrase_grad, 2 * phrases.grad[phrase_parts[rank]], atol=1e-6)
