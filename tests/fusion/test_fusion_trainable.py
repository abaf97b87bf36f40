"""Only the declared parts of a GroundedVLM train; the language model's own weights never change."""
from __future__ import annotations

import pytest
import torch
from tiny_vlm import make_examples

from fusion.config import TRAINABLE_PARTS
from fusion.trainable import apply_trainable, lora_parameters, part_parameters, train_mode, trainable_count

pytestmark = pytest.mark.usefixtures("one_thread")

DEFAULT_PARTS = ("projector", "region_adapter", "lora")


def part_of(name: str) -> str:
    """The part a state-dict entry belongs to, by name (independent of fusion.trainable's own lookup)."""
    if name.startswith("projector."):
        return "projector"
    if name.startswith("injector."):
        return "region_adapter"
    if name.startswith("vision."):
        return "vision"
    if ".lora_A." in name or ".lora_B." in name:
        return "lora"
    assert name.startswith("llm."), name
    return "llm"


def train_steps(vlm, processor, parts, steps: int = 3) -> None:
    """A few AdamW steps over every parameter that asks for a gradient, the way vqa/train.py runs them."""
    batch = processor(make_examples())
    params = [p for p in vlm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    train_mode(vlm, parts)
    for _ in range(steps):
        loss = vlm(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    vlm.eval()


@pytest.mark.parametrize(
    ("injection", "parts"),
    [
        ("prefix", DEFAULT_PARTS),
        ("prefix", ("lora",)),
        ("prefix", ("projector",)),
        ("xattn", DEFAULT_PARTS),
        ("none", ("projector", "vision")),
    ],
)
def test_only_the_declared_parts_change(build, injection: str, parts: tuple[str, ...]) -> None:
    built = build(injection, train=parts)
    vlm = built.vlm
    before = {k: v.detach().clone() for k, v in vlm.state_dict().items()}
    train_steps(vlm, built.processor, parts)
    after = vlm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    by_part: dict[str, list[str]] = {}
    for k in before:
        by_part.setdefault(part_of(k), []).append(k)
    changed_parts = {part_of(k) for k in changed}
    assert changed_parts == set(parts), f"changed {sorted(changed_parts)}, declared {sorted(parts)}"
    # every parameter of a declared part moved (LoRA's A starts moving once B is no longer zero)
    named = dict(vlm.named_parameters())
    for part in parts:
        unchanged = [k for k in by_part[part] if k in named and k not in changed]
        assert not unchanged, f"{part}: {unchanged[:3]} did not train"
    # the frozen language model, including its embedding table and head, never changes
    assert not [k for k in by_part["llm"] if k in changed]
    # a frozen vision encoder keeps its batch-norm statistics too (train_mode leaves it in eval mode)
    if "vision" not in parts:
        buffers = [k for k in by_part["vision"] if k not in named]
        assert buffers and not [k for k in buffers if k in changed]


def test_apply_trainable_counts_and_requires_grad(build) -> None:
    built = build("xattn")
    vlm = built.vlm
    parts = part_parameters(vlm)
    assert set(parts) == set(TRAINABLE_PARTS)
    sizes = {name: sum(p.numel() for p in params) for name, params in parts.items()}
    assert all(sizes[name] > 0 for name in TRAINABLE_PARTS)
    for chosen in [("lora",), ("projector", "region_adapter"), DEFAULT_PARTS, ()]:
        counts = apply_trainable(vlm, chosen)
        assert counts == {name: sizes[name] if name in chosen else 0 for name in TRAINABLE_PARTS}
        assert trainable_count(vlm) == (sum(counts.values()), sum(p.numel() for p in vlm.parameters()))
        on = {id(p) for name in chosen for p in parts[name]}
        assert all(p.requires_grad == (id(p) in on) for p in vlm.parameters())
    with pytest.raises(ValueError, match="unknown trainable parts"):
        apply_trainable(vlm, ("decoder",))


def test_lora_sits_on_the_declared_projections_only(build) -> None:
    from peft.tuners.lora import LoraLayer

    from fusion.config import LoRAConfig

    built = build("none", lora=LoRAConfig(rank=2, alpha=4, dropout=0.0, targets=("q_proj", "v_proj")))
    adapted = sorted({n.rsplit(".", 1)[-1] for n, m in built.vlm.llm.named_modules() if isinstance(m, LoraLayer)})
    assert adapted == ["q_proj", "v_proj"]
    # rank 2 on 2 layers: q_proj 32 -> 32 (4 heads of 8), v_proj 32 -> 16 (2 key-value heads of 8); A is r x in, B out x r
    assert sum(p.numel() for p in lora_parameters(built.vlm.llm)) == 2 * ((2 * 32 + 32 * 2) + (2 * 32 + 16 * 2))
    no_lora = build("none", lora=LoRAConfig(rank=0))
    assert lora_parameters(no_lora.vlm.llm) == [] and not hasattr(no_lora.vlm.llm, "peft_config")
    assert trainable_count(no_lora.vlm)[0] == sum(p.numel() for p in no_lora.vlm.projector.parameters())
