"""Campaigns as experiments: ``--vary NAME=V1,V2,...`` runs every ML scenario in each combination of settings.

The options' cross product (the first option outermost) gives the variants; each is a set of
ML-config settings (``batch_size``, ``precision``, ``backend``, ``learning_rate``, ``image_size``)
and/or ``gpu_power_limit`` (watts, set through NVML around each run: :mod:`.power_limit`). Every
event of a variant's runs carries ``variant`` (``batch_size=32,precision=bf16``, in the options'
order) and each setting as its own field.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from mltelemetry import schema
from mltelemetry.workload.config import BACKENDS, MLConfig

POWER_LIMIT = "gpu_power_limit"
CONFIG_NAMES = ("batch_size", "precision", "backend", "learning_rate", "image_size")
VARY_NAMES = (*CONFIG_NAMES, POWER_LIMIT)


def _number(kind: type, name: str, text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"--vary {name}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not value > 0:
        raise ValueError(f"--vary {name}: {text!r} must be positive")
    return value


def _value(name: str, text: str) -> Any:
    """One value of a varied setting, typed and checked."""
    text = text.strip()
    if name in ("batch_size", "image_size"):
        return _number(int, name, text)
    if name in ("learning_rate", POWER_LIMIT):
        return _number(float, name, text)
    if name == "backend" and text not in BACKENDS:
        raise ValueError(f"--vary backend: {text!r} is not one of {', '.join(BACKENDS)}")
    if not text:
        raise ValueError(f"--vary {name}: an empty value")
    return text


def parse_vary(options: list[str]) -> dict[str, list[Any]]:
    """``["batch_size=16,32", "precision=fp32,bf16"]`` -> {"batch_size": [16, 32], "precision": ["fp32", "bf16"]}.
    ValueError (a usage error) for an unknown name, a repeated name or value, or a bad value."""
    vary: dict[str, list[Any]] = {}
    for option in options:
        name, sep, values = option.partition("=")
        name = name.strip()
        if not sep or not values.strip():
            raise ValueError(f"--vary wants NAME=V1,V2,..., not {option!r}")
        if name not in VARY_NAMES:
            raise ValueError(f"--vary: unknown setting {name!r}; known: {', '.join(VARY_NAMES)}")
        if name in ("precision",) and "precision" not in {f.name for f in dataclasses.fields(MLConfig)}:
            raise ValueError("--vary precision: this version's ML scenarios have no precision setting")
        if name in vary:
            raise ValueError(f"--vary {name} is given twice; list all its values in one option")
        typed = [_value(name, v) for v in values.split(",")]
        if len(set(typed)) != len(typed):
            raise ValueError(f"--vary {name}: a value is repeated in {values!r}")
        vary[name] = typed
    return vary


def _text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Variant:
    """One combination of varied settings, in the --vary options' order."""

    settings: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        return ",".join(f"{name}={_text(value)}" for name, value in self.settings)

    def fields(self) -> dict[str, Any]:
        """What every event of the variant's runs carries."""
        return {schema.FIELD_VARIANT: self.label, **dict(self.settings)}

    def config(self, base: MLConfig) -> MLConfig:
        """``base`` with the variant's ML settings (checked as any MLConfig is); the generated data is shared."""
        changes = {name: value for name, value in self.settings if name in CONFIG_NAMES}
        config = dataclasses.replace(base, **changes) if changes else base
        config._synthetic_dir = base._synthetic_dir
        return config

    @property
    def power_limit_w(self) -> float | None:
        return dict(self.settings).get(POWER_LIMIT)


def variants(vary: dict[str, list[Any]]) -> list[Variant]:
    """The cross product of the varied settings (the first option outermost); [] when nothing is varied."""
    if not vary:
        return []
    return [Variant(tuple(zip(vary, values))) for values in itertools.product(*vary.values())]
