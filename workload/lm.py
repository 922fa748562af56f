"""Transformer scenarios: ``lm-train`` and ``lm-infer``, a small decoder-only language model on torch.

The text is the Python standard library's own source (byte-level, 256 tokens), which every machine with
Python has: no download, and the same corpus wherever the Python version is the same. The files are
taken in sorted order; the last ``val_fraction`` of the bytes is the validation set (a fixed split).

``lm-train``, one run::

    run
    ├── prepare_data   corpus read and split (files, bytes, train/validation tokens)
    ├── create_model   parameters, size, precision, device
    ├── train          until the validation loss reaches the target or max_epochs
    │   └── epoch 1..n steps_per_epoch optimizer steps; loss, val_loss, tokens
    ├── export         weights and settings (loadable by lm-infer)
    └── cleanup

``lm-infer``, one run: ``prepare_data`` (a fixed prompt set from the validation text), ``create_model``
(an exported ``lm-train`` model, or random weights of the same size with the reason), ``prefill`` (all
prompts through the model, filling the KV cache; ``prompt_tokens``), ``decode`` (``new_tokens`` generated
per prompt, one token per step from the cache; ``generated_tokens``), ``cleanup``.

Every window that processes tokens records how many (``tokens``), so the analysis gives energy per token.
With ``processes`` > 1, ``lm-train`` runs torch DistributedDataParallel (gloo on CPU, NCCL on GPUs, one
process per GPU); rank 0 is the campaign's run process and the only one that records events, and
``tokens`` counts the tokens of every rank.
"""

from __future__ import annotations

import logging
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.workload.scenarios import RunContext, scenario

log = logging.getLogger(__name__)

LM_SCENARIOS = ("lm-train", "lm-infer")


@dataclass
class Corpus:
    """Byte tokens of the standard library's sources, split once: ``train`` and ``validation`` are ``bytes``."""

    train: bytes
    validation: bytes
    files: int
    root: str


def read_corpus(limit_bytes: int, val_fraction: float, root: str | Path | None = None) -> Corpus:
    """The first ``limit_bytes`` of the ``.py`` files under ``root`` (the standard library by default), in sorted
    path order; the last ``val_fraction`` of them is the validation text."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    chunks, total, files = [], 0, 0
    for path in sorted(base.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        chunks.append(data[: limit_bytes - total])
        total += len(chunks[-1])
        files += 1
        if total >= limit_bytes:
            break
    text = b"".join(chunks)
    split = int(len(text) * (1 - val_fraction))
    if split < 2 or len(text) - split < 2:
        raise MltelemetryError(f"too little text under {base} for a train/validation split ({len(text)} bytes)")
    return Corpus(text[:split], text[split:], files, str(base))


def _settings(cfg: Any, processes: int = 1) -> dict[str, Any]:
    """What the run event records of the settings (the analysis groups runs by them)."""
    return {schema.FIELD_PRECISION: cfg.precision, schema.FIELD_BATCH_SIZE: cfg.batch_size,
            schema.FIELD_PROCESSES: processes, **cfg.lm.model_settings()}


def _tokens_fields(count: int) -> dict[str, int]:
    return {schema.FIELD_TOKENS: int(count)}


def run_lm_train(ctx: RunContext) -> None:
    from mltelemetry.workload import lm_torch

    cfg, lm = ctx.config, ctx.config.lm
    lm.check()
    ctx.run_fields.update(_settings(cfg, cfg.processes))
    with ctx.action("prepare_data", source="python-stdlib", val_fraction=lm.val_fraction) as fields:
        corpus = read_corpus(lm.corpus_bytes, lm.val_fraction)
        fields.update(files=corpus.files, path=corpus.root, train_tokens=len(corpus.train),
                      validation_tokens=len(corpus.validation))
    trainer = lm_torch.Trainer(cfg, corpus, seed=cfg.seed + ctx.run)
    try:
        with ctx.action("create_model", model="decoder-transformer", **trainer.describe()) as fields:
            fields.update(trainer.create_model())
        with ctx.action("train", max_epochs=lm.max_epochs, steps_per_epoch=lm.steps_per_epoch,
                        target_val_loss=lm.target_val_loss, batch_size=cfg.batch_size,
                        learning_rate=cfg.learning_rate, optimizer="adamw",
                        **{schema.FIELD_PROCESSES: cfg.processes}) as fields:
            history: list[dict[str, Any]] = []
            for epoch in range(1, lm.max_epochs + 1):
                with ctx.annotator.epoch(epoch) as epoch_fields:
                    epoch_fields.update(trainer.train_epoch())
                history.append({"epoch": epoch, **epoch_fields})
                ctx.progress(epoch=epoch, max_epochs=lm.max_epochs)
                reached = lm.target_val_loss is not None and epoch_fields["val_loss"] <= lm.target_val_loss
                if trainer.stop_all(reached):
                    break
            last = history[-1]
            fields.update(epochs=len(history), loss=last["loss"], val_loss=last["val_loss"],
                          reached_target=lm.target_val_loss is not None and last["val_loss"] <= lm.target_val_loss,
                          **_tokens_fields(sum(h[schema.FIELD_TOKENS] for h in history)))
        with ctx.action("export") as fields:
            if cfg.export_dir is None:
                fields["skipped"] = "no export directory"
            else:
                folder = Path(cfg.export_dir) / ctx.recorder.campaign / f"{ctx.scenario}-run{ctx.run:03d}"
                paths = trainer.export(folder, history)
                fields.update(path=str(folder), files=len(paths), bytes=sum(p.stat().st_size for p in paths))
    finally:
        with ctx.action("cleanup"):
            trainer.close()


def run_lm_infer(ctx: RunContext) -> None:
    from mltelemetry.workload import lm_torch

    cfg, lm = ctx.config, ctx.config.lm
    lm.check()
    ctx.run_fields.update(_settings(cfg))
    with ctx.action("prepare_data", source="python-stdlib", prompts=lm.prompts,
                    prompt_tokens_each=lm.prompt_tokens) as fields:
        corpus = read_corpus(lm.corpus_bytes, lm.val_fraction)
        prompts = fixed_prompts(corpus.validation, lm.prompts, lm.prompt_tokens)
        fields.update(files=corpus.files, path=corpus.root)
    generator = lm_torch.Generator(cfg, seed=cfg.seed + ctx.run)
    try:
        with ctx.action("create_model", model="decoder-transformer", **generator.describe()) as fields:
            fields.update(generator.create_model(lm.checkpoint))
        batch = min(cfg.batch_size, len(prompts))
        with ctx.action("prefill", batch_size=batch, rounds=lm.prefill_rounds) as fields:
            caches = generator.prefill(prompts, batch, lm.prefill_rounds)
            prompt_tokens = lm.prefill_rounds * len(prompts) * lm.prompt_tokens
            fields.update({schema.FIELD_PROMPT_TOKENS: prompt_tokens, **_tokens_fields(prompt_tokens)})
        with ctx.action("decode", batch_size=batch, new_tokens_each=lm.new_tokens, rounds=lm.decode_rounds) as fields:
            generated = generator.decode(caches, lm.new_tokens, lm.decode_rounds)
            fields.update({schema.FIELD_GENERATED_TOKENS: generated, **_tokens_fields(generated)})
    finally:
        with ctx.action("cleanup"):
            generator.close()


def fixed_prompts(text: bytes, count: int, length: int) -> list[bytes]:
    """``count`` prompts of ``length`` bytes at evenly spaced offsets of ``text``: the same set every run."""
    if len(text) < length:
        raise MltelemetryError(f"the validation text ({len(text)} bytes) is shorter than one prompt ({length})")
    step = max(1, (len(text) - length) // count)
    return [text[i * step: i * step + length] for i in range(count)]


@scenario("lm-train", uses_framework=True, backend="torch")
def lm_train(ctx: RunContext) -> None:
    """A small decoder-only transformer trained from scratch on the standard library's source (byte-level)."""
    run_lm_train(ctx)


@scenario("lm-infer", uses_framework=True, backend="torch")
def lm_infer(ctx: RunContext) -> None:
    """Generation with a KV cache over a fixed prompt set: ``prefill`` and ``decode`` as separate actions."""
    run_lm_infer(ctx)
