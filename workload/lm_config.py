"""Settings of the transformer scenarios (``lm-train``, ``lm-infer``); kept apart so MLConfig can hold them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from mltelemetry.errors import MltelemetryError


@dataclass
class LMConfig:
    """The language model's size and schedule. The defaults (≈25 M parameters, 512 tokens of context) train
    in minutes on one GPU and keep it busy (≥ 90 % utilisation on an H200, bench/lm_gpu.md); tests shrink them.
    ``prefill_rounds``/``decode_rounds``: how often ``lm-infer`` goes through the prompt set in its ``prefill`` and
    ``decode`` windows, so each window lasts long enough for the meter and the GPU counter (seconds, not ms).
    ``target_val_loss`` is in nats per byte (``None``: run ``max_epochs``)."""

    d_model: int = 512
    layers: int = 8
    heads: int = 8
    context: int = 512
    steps_per_epoch: int = 200
    max_epochs: int = 10
    target_val_loss: float | None = 1.5
    corpus_bytes: int = 8_000_000
    val_fraction: float = 0.1
    eval_batches: int = 20
    prompts: int = 64
    prompt_tokens: int = 256
    new_tokens: int = 256
    prefill_rounds: int = 100
    decode_rounds: int = 5
    checkpoint: Path | None = None

    def check(self) -> None:
        if self.d_model % self.heads:
            raise MltelemetryError(f"lm d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.prompt_tokens + self.new_tokens > self.context:
            raise MltelemetryError(f"prompt tokens + new tokens ({self.prompt_tokens} + {self.new_tokens}) must fit "
                                   f"the context ({self.context})")
        for name in ("d_model", "layers", "heads", "context", "steps_per_epoch", "max_epochs", "corpus_bytes",
                     "eval_batches", "prompts", "prompt_tokens", "new_tokens", "prefill_rounds", "decode_rounds"):
            if getattr(self, name) < 1:
                raise MltelemetryError(f"lm {name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise MltelemetryError(f"lm val_fraction must lie between 0 and 1, got {self.val_fraction}")

    def model_settings(self) -> dict[str, int]:
        return {"d_model": self.d_model, "layers": self.layers, "heads": self.heads, "context": self.context}

    @classmethod
    def from_settings(cls, settings: list[str], **given: object) -> LMConfig:
        """An LMConfig from ``name=value`` pairs (``--lm d_model=256 --lm layers=4``) and ``given`` values."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = dict(given)
        for item in settings:
            name, sep, text = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in types:
                known = ", ".join(types)
                raise ValueError(f"--lm takes NAME=VALUE with NAME one of {known}; got {item!r}")
            kind = types[name]
            try:
                if text.strip().lower() == "none" and "None" in kind:
                    values[name] = None
                elif kind.startswith("int"):
                    values[name] = int(text)
                elif kind.startswith("float"):
                    values[name] = float(text)
                else:
                    values[name] = Path(text)
            except ValueError:
                raise ValueError(f"--lm {name}: {text!r} is not a {kind.split(' ')[0]}") from None
        config = cls(**values)  # type: ignore[arg-type]
        try:
            config.check()
        except MltelemetryError as e:
            raise ValueError(str(e)) from None
        return config
