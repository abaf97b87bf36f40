"""Typed configuration of a grounded vision-language model (``GroundedVLM``).

One dataclass per part; :func:`fusion.builder.build_grounded_vlm` turns them into constructor arguments (no config
object lives inside a module). YAML presets live in ``configs/vqa/`` and ``configs/reportgen/`` under ``model:``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: how region tokens reach the language model
INJECTION_MODES: tuple[str, ...] = ("none", "text", "prefix", "xattn")
#: what can be trained; :func:`fusion.trainable.apply_trainable` is the one place that acts on it
TRAINABLE_PARTS: tuple[str, ...] = ("projector", "region_adapter", "lora", "vision")


@dataclass
class VisionConfig:
    """The image side: a timm backbone whose last feature map is average-pooled to ``grid`` x ``grid`` tokens.

    ``backbone``: ``"default"`` (EfficientNet-Lite0 ImageNet, offline), a timm name or a weights file (see
    ``grounding.pretrained.create_image_backbone``). Ignored when the language model is a LLaVA-style
    image-text-to-text model: its own vision tower is used.
    """

    backbone: str = "default"
    pretrained: bool = True
    image_size: int = 224
    grid: int = 4
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class LoRAConfig:
    """peft LoRA on the language model's attention projections; ``rank: 0`` leaves the language model frozen."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class RegionConfig:
    """Region tokens (from a region store) and how they are injected.

    ``max_regions``: R, the best-scored regions kept per image. ``min_score``: regions scoring below it are dropped
    first. ``text_decimals``: digits of box coordinates and scores in ``text`` mode. ``xattn_every``: a gated
    cross-attention adapter after every N-th decoder layer (the last layer of each group); ``xattn_heads``: its
    heads. ``use_features`` / ``use_phrases``: leave the RoI feature or phrase embedding out of the encoder.
    ``phrase_words``: a ``prefix`` / ``xattn`` region token starts from the language model's own mean input
    embedding of the phrase's words (the encoder adds box, appearance, score and level to it).
    """

    max_regions: int = 8
    min_score: float = 0.0
    num_frequencies: int = 8
    text_decimals: int = 2
    xattn_every: int = 4
    xattn_heads: int = 4
    use_features: bool = True
    use_phrases: bool = True
    phrase_words: bool = True


@dataclass
class FusionConfig:
    """A whole ``GroundedVLM``.

    ``llm``: ``"default"`` (SmolLM2-135M-Instruct, offline), a hub id or a folder; a causal LM or a LLaVA-style
    image-text-to-text model. ``injection``: one of :data:`INJECTION_MODES`. ``train``: the parts that train (a
    subset of :data:`TRAINABLE_PARTS`). ``system_prompt``: the chat's system message ("" for none; then a
    chat template may add its own). ``dtype``: the language model's weights (``float32`` or ``bfloat16``).
    """

    llm: str = "default"
    injection: str = "none"
    vision: VisionConfig = field(default_factory=VisionConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)
    train: tuple[str, ...] = ("projector", "region_adapter", "lora")
    system_prompt: str = "You answer questions about medical images briefly."
    dtype: str = "float32"

    def validate(self) -> FusionConfig:
        """Check the values that types alone do not; returns ``self``."""
        if self.injection not in INJECTION_MODES:
            raise ValueError(f"injection {self.injection!r} is not one of {', '.join(INJECTION_MODES)}")
        if bad := sorted(set(self.train) - set(TRAINABLE_PARTS)):
            raise ValueError(f"train lists {bad}; trainable parts are {', '.join(TRAINABLE_PARTS)}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype {self.dtype!r} is not float32, bfloat16 or float16")
        checks = [
            (self.vision.grid >= 1, f"vision.grid must be >= 1, got {self.vision.grid}"),
            (self.vision.image_size >= 16, f"vision.image_size must be >= 16, got {self.vision.image_size}"),
            (self.lora.rank >= 0, f"lora.rank must be >= 0, got {self.lora.rank}"),
            (self.regions.max_regions >= 1, f"regions.max_regions must be >= 1, got {self.regions.max_regions}"),
            (self.regions.xattn_every >= 1, f"regions.xattn_every must be >= 1, got {self.regions.xattn_every}"),
            (self.regions.text_decimals >= 0, "regions.text_decimals must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self
