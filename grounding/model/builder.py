"""Config -> Med-GLIP: the one place where a config becomes constructor arguments."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from grounding.model.losses import DEFAULT_LOSS_WEIGHTS
from grounding.model.medglip import MedGLIP, load_tokenizer
from grounding.pretrained import DEFAULT
from grounding.schemas import MODALITIES


@dataclass
class GrounderConfig:
    """Everything that defines a Med-GLIP model. Defaults: EfficientNet-Lite0 + all-MiniLM-L6-v2 (both offline),
    D = 256, three fusion layers."""

    backbone: str = DEFAULT
    pretrained_backbone: bool = True
    backbone_timm_name: str | None = None
    text_encoder: str | dict[str, Any] = DEFAULT
    pretrained_text_encoder: bool = True
    tokenizer: str = DEFAULT
    dim: int = 256
    strides: tuple[int, ...] = (8, 16, 32)
    fusion_layers: int = 3
    fusion_heads: int = 8
    head_convs: int = 2
    num_modalities: int = len(MODALITIES)
    prompt_length: int = 4
    use_mask_head: bool = True
    infer_missing_modality: bool = True
    layer_scale_init: float = 0.1
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    mlm_probability: float = 0.15
    centre_radius: float = 1.5
    #: convolutions on channels-last (NHWC) activations: the same model and outputs, faster on CPU (oneDNN)
    channels_last: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrounderConfig:
        """Strict: an unknown key raises ``ValueError``."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown grounder config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)

    @classmethod
    def tiny(cls, **overrides: Any) -> GrounderConfig:
        """The test-sized model (:func:`tiny_config`)."""
        return tiny_config(**overrides)

    def to_kwargs(self) -> dict[str, Any]:
        """The model's constructor arguments (JSON-serialisable)."""
        kwargs = asdict(self)
        kwargs["strides"] = list(self.strides)
        return kwargs


def tiny_config(**overrides: Any) -> GrounderConfig:
    """A seconds-on-CPU model for tests: random-init timm ``test_efficientnet`` trunk (~80k parameters) and a
    2-layer, 32-wide BERT with the MiniLM tokenizer's vocabulary, D = 32."""
    text = {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": len(load_tokenizer(overrides.get("tokenizer", DEFAULT))),
    }
    base = dict(
        backbone="test_efficientnet",
        pretrained_backbone=False,
        text_encoder=text,
        pretrained_text_encoder=False,
        dim=32,
        fusion_layers=2,
        fusion_heads=2,
        head_convs=1,
        prompt_length=2,
    )
    return GrounderConfig(**{**base, **overrides})


def build_grounder(cfg: GrounderConfig) -> MedGLIP:
    """Build Med-GLIP from its config (the config stops here: the model gets plain arguments)."""
    return MedGLIP(**cfg.to_kwargs())
