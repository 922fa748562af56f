"""The torch side of the transformer scenarios (imported only when ``lm-train``/``lm-infer`` run).

A GPT-style decoder (pre-norm blocks, learned positions, tied embeddings, ``scaled_dot_product_attention``) with a
KV cache for generation; a trainer that keeps the whole token set on the device and draws each epoch's batch
offsets at once (no input pipeline between the device and its work); DistributedDataParallel across processes.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.lm import Corpus
from mltelemetry.workload.lm_config import LMConfig
from mltelemetry.workload.torch_backend import resolve_device
from mltelemetry.workload.torch_dist import ProcessGroup, join, leave, rank_device, unwrap

VOCAB = 256  # byte-level
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class KVCache:
    """Keys and values of every layer for a batch, filled up to ``length`` positions."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, max_len: int = 0) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
                   for t in self.qkv(self.ln1(x)).split(width, dim=2))
        if cache is not None:
            start = cache.length
            if len(cache.keys) <= layer:  # first call (the prefill): room for every position to come
                shape = (batch, self.heads, max_len, width // self.heads)
                cache.keys.append(k.new_empty(shape))
                cache.values.append(v.new_empty(shape))
            cache.keys[layer][:, :, start:start + length] = k
            cache.values[layer][:, :, start:start + length] = v
            k, v = cache.keys[layer][:, :, :start + length], cache.values[layer][:, :, :start + length]
            # a prefill starts at 0 and is causal; a decode step (one query) sees every cached position
            causal = length > 1
        else:
            causal = True
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.proj(y.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.ln2(x))


class DecoderLM(nn.Module):
    def __init__(self, d_model: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(VOCAB, d_model)
        self.position = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.apply(_init)  # GPT-2's: small weights, so the first loss is near ln 256 (uniform over bytes)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, max_len: int = 0) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, max_len)
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.head(self.norm(x))


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # the tied head counted once


def _precision(cfg: MLConfig, device: torch.device) -> Any:
    """The autocast context for the configured precision (tf32 switches the matmul mode instead)."""
    precision = cfg.precision
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision in AUTOCAST_DTYPES:
        return lambda: torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return nullcontext


def _attention() -> Any:
    """Attention kernels for generation: cuDNN's builds a plan for every new cache length (tens of ms each)."""
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(backends)


def _sync(device: torch.device) -> None:
    """Wait for the device, so a window's end is the end of its work, not of its launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """Trains the model for ``lm-train``; with ``processes`` > 1 this object is rank 0 and starts the others."""

    def __init__(self, cfg: MLConfig, corpus: Corpus, seed: int, rank: int = 0) -> None:
        lm: LMConfig = cfg.lm
        self.cfg, self.lm, self.seed, self.rank = cfg, lm, seed, rank
        self.world = cfg.processes
        self.group: ProcessGroup | None = None
        if self.world > 1:
            self.device = rank_device(cfg.device, rank, self.world)
            if rank == 0:
                self.group = ProcessGroup(self.device, self.world)
                self.group.start(_worker, cfg, corpus, seed)
        else:
            self.device = resolve_device(cfg.device)
        self.autocast = _precision(cfg, self.device)
        self.train_tokens = torch.frombuffer(bytearray(corpus.train), dtype=torch.uint8).to(self.device)
        self.val_tokens = torch.frombuffer(bytearray(corpus.validation), dtype=torch.uint8).to(self.device)
        for name, data in (("train", self.train_tokens), ("validation", self.val_tokens)):
            if len(data) <= lm.context + 1:
                raise MltelemetryError(f"the {name} text ({len(data)} bytes) is shorter than the context + 1")
        # each rank draws its own batches; the validation batches are the same every epoch
        self.batches = torch.Generator().manual_seed(seed * 1000 + rank)
        val_seed = torch.Generator().manual_seed(seed)
        self.val_offsets = torch.randint(0, len(self.val_tokens) - lm.context - 1, (lm.eval_batches, cfg.batch_size),
                                         generator=val_seed).to(self.device)
        self.model: nn.Module | None = None

    # --- the run ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return {"framework": "torch", "framework_version": torch.__version__, "device": device,
                schema.FIELD_PRECISION: self.cfg.precision, schema.FIELD_BATCH_SIZE: self.cfg.batch_size,
                schema.FIELD_PROCESSES: self.world, **self.lm.model_settings()}

    def create_model(self) -> dict[str, Any]:
        torch.manual_seed(self.seed)
        model = DecoderLM(**self.lm.model_settings()).to(self.device)
        params = count_params(model)
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[self.rank] if self.device.type == "cuda"
                                                        else None)
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=self.cfg.learning_rate,
                                           fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.precision == "fp16")
        _sync(self.device)
        return {schema.FIELD_PARAMS_TOTAL: params, schema.FIELD_PARAMS_TRAINABLE: params, "weights": "random"}

    def _batch(self, data: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = offsets[:, None] + torch.arange(self.lm.context + 1, device=self.device)
        chunk = data[index].long()
        return chunk[:, :-1], chunk[:, 1:]

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            logits = model(x)
        return F.cross_entropy(logits.float().reshape(-1, VOCAB), y.reshape(-1))

    def train_epoch(self) -> dict[str, Any]:
        """``steps_per_epoch`` optimizer steps, then (rank 0) the validation loss; fields for the epoch window."""
        lm, model = self.lm, self.model
        assert model is not None, "create_model first"
        model.train()
        # the epoch's batch offsets go to the device in one copy: a copy per step would wait for the GPU each time
        offsets = torch.randint(0, len(self.train_tokens) - lm.context - 1, (lm.steps_per_epoch, self.cfg.batch_size),
                                generator=self.batches).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        for step in range(lm.steps_per_epoch):
            x, y = self._batch(self.train_tokens, offsets[step])
            loss = self._loss(model, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.detach()
        fields: dict[str, Any] = {
            schema.FIELD_LOSS: float(loss_sum) / lm.steps_per_epoch,
            schema.FIELD_TOKENS: lm.steps_per_epoch * self.cfg.batch_size * lm.context * self.world,
        }
        if self.rank == 0:
            fields[schema.FIELD_VAL_LOSS] = self.validation_loss()
        _sync(self.device)
        return fields

    @torch.no_grad()
    def validation_loss(self) -> float:
        model = unwrap(self.model)
        model.eval()
        total = torch.zeros((), device=self.device)
        for offsets in self.val_offsets:
            x, y = self._batch(self.val_tokens, offsets)
            total += self._loss(model, x, y)
        return float(total) / len(self.val_offsets)

    def stop_all(self, stop: bool) -> bool:
        """Rank 0's decision to stop, shared with every rank (each calls this once per epoch)."""
        if self.world == 1:
            return stop
        flag = torch.tensor([1 if stop else 0], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def export(self, folder: Path, history: list[dict[str, Any]]) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        model = unwrap(self.model)
        weights, settings = folder / "model.pt", folder / "model.json"
        torch.save(model.state_dict(), weights)
        settings.write_text(json.dumps({"model": "decoder-transformer", "vocab": VOCAB,
                                        **self.lm.model_settings(), "history": history}, indent=1))
        return [weights, settings]

    def close(self) -> None:
        """Leave the process group and reap the other ranks (terminated if they do not end in time)."""
        if self.group is not None:
            self.group.close()
            self.group = None
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _worker(rank: int, address: str, cfg: MLConfig, corpus: Corpus, seed: int) -> None:
    """Ranks 1..N-1: the same model and epochs as rank 0, no events; stops when rank 0 says so."""
    trainer = Trainer(cfg, corpus, seed, rank=rank)
    join(trainer.device, address, rank, trainer.world)
    try:
        trainer.create_model()
        for _ in range(cfg.lm.max_epochs):
            trainer.train_epoch()
            if trainer.stop_all(False):
                break
    finally:
        leave()


class Generator:
    """Greedy generation with a KV cache for ``lm-infer``."""

    def __init__(self, cfg: MLConfig, seed: int) -> None:
        self.cfg, self.lm, self.seed = cfg, cfg.lm, seed
        self.device = resolve_device(cfg.device)
        _precision(cfg, self.device)  # the tf32 matmul mode; bf16/fp16 weights are cast in create_model
        self.model: DecoderLM | None = None
        self.settings = cfg.lm.model_settings()

    def describe(self) -> dict[str, Any]:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return {"framework": "torch", "framework_version": torch.__version__, "device": device,
                schema.FIELD_PRECISION: self.cfg.precision, schema.FIELD_BATCH_SIZE: self.cfg.batch_size}

    def create_model(self, checkpoint: Path | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        state = None
        if checkpoint is not None:
            folder = Path(checkpoint)
            try:
                saved = json.loads((folder / "model.json").read_text())
                self.settings = {k: int(saved[k]) for k in ("d_model", "layers", "heads", "context")}
                state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
            except (OSError, KeyError, ValueError, RuntimeError) as e:
                raise MltelemetryError(f"{folder} is not an lm-train export (model.json, model.pt): {e}") from e
            fields["weights"] = str(folder)
        else:
            fields.update(weights="random", fallback_reason="no lm-train export given (--lm-checkpoint)")
        if self.lm.prompt_tokens + self.lm.new_tokens > self.settings["context"]:
            raise MltelemetryError(f"prompt + new tokens ({self.lm.prompt_tokens} + {self.lm.new_tokens}) exceed the "
                                   f"model's context ({self.settings['context']})")
        torch.manual_seed(self.seed)
        model = DecoderLM(**self.settings)
        if state is not None:
            model.load_state_dict(state)
        dtype = AUTOCAST_DTYPES.get(self.cfg.precision, torch.float32)
        self.model = model.to(self.device, dtype=dtype).eval()
        params = count_params(model)
        _sync(self.device)
        return {**fields, **self.settings, schema.FIELD_PARAMS_TOTAL: params, schema.FIELD_PARAMS_TRAINABLE: 0}

    @torch.no_grad()
    def prefill(self, prompts: list[bytes], batch: int, rounds: int = 1) -> list[tuple[KVCache, torch.Tensor]]:
        """Every prompt through the model in batches, ``rounds`` times (each round refills the same caches, so a
        window long enough for the meter and the GPU counter costs no more memory); each batch's cache and last
        logits."""
        assert self.model is not None, "create_model first"
        max_len = self.lm.prompt_tokens + self.lm.new_tokens
        batches = [torch.tensor([list(p) for p in prompts[i:i + batch]], dtype=torch.long, device=self.device)
                   for i in range(0, len(prompts), batch)]
        done = [(KVCache(), torch.empty(0)) for _ in batches]
        with _attention():
            for _ in range(rounds):
                for i, tokens in enumerate(batches):
                    cache = done[i][0]
                    cache.length = 0
                    done[i] = (cache, self.model(tokens, cache, max_len)[:, -1])
        _sync(self.device)
        return done

    @torch.no_grad()
    def decode(self, prefilled: list[tuple[KVCache, torch.Tensor]], new_tokens: int, rounds: int = 1) -> int:
        """``new_tokens`` greedy steps per batch from its prefilled cache, ``rounds`` times (each round starts again
        from the end of the prompt); the number of tokens generated."""
        assert self.model is not None, "create_model first"
        max_len = self.lm.prompt_tokens + new_tokens
        generated = 0
        with _attention():
            for _ in range(rounds):
                for cache, logits in prefilled:
                    cache.length = self.lm.prompt_tokens
                    token = logits.argmax(-1, keepdim=True)
                    for _ in range(new_tokens - 1):
                        token = self.model(token, cache, max_len)[:, -1].argmax(-1, keepdim=True)
                    generated += token.shape[0] * new_tokens
        _sync(self.device)
        return generated

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
