"""Typed configs: YAML + overrides, strict keys and types."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from grounding.configio import ConfigError, load_config, parse_overrides, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Stage:
    name: str = "quick"
    steps: int = 10
    bf16: bool = False
    strides: tuple[int, ...] = (8, 16, 32)
    weights: dict[str, float] = field(default_factory=dict)
    mode: Literal["none", "text", "prefix"] = "none"
    precision: Literal["auto", "no", "bf16"] = "auto"
    resume: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "quick.yaml"
    path.write_text("steps: 20\nstrides: [8, 16]\noptim:\n  lr: 3\n")
    cfg = load_config(Stage, path, ["optim.lr=2e-4", "bf16=true", "weights.mlm=0", "mode=text"])
    assert cfg.steps == 20 and cfg.strides == (8, 16) and cfg.bf16 is True and cfg.mode == "text"
    assert cfg.optim.lr == 2e-4 and isinstance(cfg.optim.lr, float) and cfg.optim.betas == (0.9, 0.999)
    assert cfg.weights == {"mlm": 0.0}
    assert to_dict(cfg)["strides"] == [8, 16]


def test_a_bare_no_is_the_word_where_a_choice_expects_it(tmp_path: Path) -> None:
    """YAML 1.1 reads ``no`` as false: a Literal choice that holds "no" takes the word back, others still refuse."""
    assert load_config(Stage, None, ["precision=no"]).precision == "no"
    path = tmp_path / "fp32.yaml"
    path.write_text("precision: no\n")
    assert load_config(Stage, path).precision == "no"
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Stage, None, ["mode=no"])  # "no" is not a mode
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Stage, None, ["precision=yes"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=3", "unknown key"),
        ("steps=ten", "expected an integer"),
        ("bf16=1", "expected true or false"),
        ("mode=xattn", "not one of"),
        ("optim.lr=fast", "expected a number"),
        ("optim.momentum=0.9", "unknown key"),
        ("steps", "not key=value"),
    ],
)
def test_bad_overrides_fail_clearly(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Stage, None, [override])


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(Stage, path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(Stage, tmp_path / "missing.yaml")


def test_parse_overrides_nests_dotted_keys() -> None:
    assert parse_overrides(["a.b.c=1", "a.d=[1, 2]", "e="]) == {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": ""}
