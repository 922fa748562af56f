"""The transformer scenarios: lm-train and lm-infer on the CPU with small settings, DDP with two gloo processes."""

import importlib

import pytest

from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign
from mltelemetry.workload.config import MLConfig
from mltelemetry.workload.lm import fixed_prompts, read_corpus
from mltelemetry.workload.lm_config import LMConfig

try:
    torch = importlib.import_module("torch")
    lm_torch = importlib.import_module("mltelemetry.workload.lm_torch")
except ImportError as e:  # `make test` installs the torch extra; a missing framework is a failure, not a skip
    pytest.fail(f"{e.name} is not installed: pip install -e '.[torch]' (make test does)", pytrace=False)

# 2 layers of width 32, context 32: trains a few steps a second on one core
TINY = dict(d_model=32, layers=2, heads=2, context=32, steps_per_epoch=5, max_epochs=2, target_val_loss=None,
            corpus_bytes=200_000, eval_batches=2, prompts=6, prompt_tokens=8, new_tokens=5, prefill_rounds=2,
            decode_rounds=3)


def config(tmp_path, processes=1, **lm):
    return MLConfig(backend="torch", device="cpu", batch_size=4, export_dir=tmp_path / "exports",
                    workdir=tmp_path, processes=processes, lm=LMConfig(**{**TINY, **lm}))


def run(tmp_path, scenario, cfg, campaign="c"):
    store = tmp_path / "lm.db"
    plan = CampaignPlan(campaign=campaign, scenarios=[scenario], runs=1, seconds=1, pause_s=0, config=cfg)
    result = run_campaign(store, plan, show_progress=False)
    with Store(store) as s:
        return result, [e for e in s.events(campaign) if e.action != "campaign"]


def test_corpus_is_the_stdlib_source_split_at_a_fixed_point():
    corpus = read_corpus(100_000, 0.1)
    assert len(corpus.train) + len(corpus.validation) == 100_000
    assert len(corpus.validation) == 10_000  # the last 10 % of the bytes
    assert corpus == read_corpus(100_000, 0.1)  # the same text every time
    # prompts: 4 of 8 bytes at offsets 0, 2498, 4996, 7494 of the validation text ((10000 - 8) // 4 = 2498)
    prompts = fixed_prompts(corpus.validation, 4, 8)
    assert prompts == [corpus.validation[i:i + 8] for i in (0, 2498, 4996, 7494)]


def test_kv_cache_generation_equals_full_recomputation():
    torch.manual_seed(0)
    model = lm_torch.DecoderLM(d_model=32, layers=2, heads=2, context=16).eval()
    prompt = torch.randint(0, 256, (3, 5))
    with torch.no_grad():
        cache = lm_torch.KVCache()
        logits = model(prompt, cache, max_len=9)
        tokens = prompt
        for _ in range(4):  # each step from the cache must give what the whole sequence gives
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            full = model(tokens)[:, -1]
            logits = model(tokens[:, -1:], cache, max_len=9)
            assert torch.allclose(logits[:, -1], full, atol=1e-5)
    assert cache.length == 9


def test_lm_train_records_the_papers_actions_with_tokens(tmp_path):
    result, events = run(tmp_path, "lm-train", config(tmp_path))
    assert result["ok"] == 1
    actions = [e.action for e in events]
    assert sorted(actions) == sorted(["run", "prepare_data", "create_model", "train", "epoch", "epoch", "export",
                                      "cleanup"])
    by_action = {e.action: e for e in events}
    epochs = [e for e in events if e.action == "epoch"]
    # tokens per epoch = steps × batch × context = 5 × 4 × 32 = 640; the train window holds both epochs
    assert [e.fields["tokens"] for e in epochs] == [640, 640]
    assert by_action["train"].fields["tokens"] == 1280
    assert all(e.fields["loss"] > 0 and e.fields["val_loss"] > 0 for e in epochs)
    # a byte-level model starts near ln 256 = 5.55 nats and must not get worse in 10 steps
    assert epochs[-1].fields["val_loss"] < 5.6
    # parameters: embeddings 256×32 + 32×32, per block 2 LayerNorms (4×32), qkv 32×96+96, proj 32×32+32,
    # MLP 32×128+128 + 128×32+32; final LayerNorm 64; the head is tied to the embedding
    block = 4 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32)
    assert by_action["create_model"].fields["params_total"] == 256 * 32 + 32 * 32 + 2 * block + 64
    assert by_action["create_model"].fields["precision"] == "fp32"
    assert by_action["create_model"].fields["batch_size"] == 4
    assert (tmp_path / "exports" / "c" / "lm-train-run001" / "model.pt").is_file()


def test_lm_train_stops_at_the_target_validation_loss(tmp_path):
    # a target every model reaches at once (10 nats > ln 256): one epoch, reached_target
    _, events = run(tmp_path, "lm-train", config(tmp_path, target_val_loss=10.0, max_epochs=5))
    train = next(e for e in events if e.action == "train")
    assert train.fields["epochs"] == 1 and train.fields["reached_target"] is True
    assert [e.action for e in events].count("epoch") == 1


def test_lm_infer_prefill_and_decode_count_their_tokens(tmp_path):
    _, trained = run(tmp_path, "lm-train", config(tmp_path), campaign="t")
    export = tmp_path / "exports" / "t" / "lm-train-run001"
    result, events = run(tmp_path, "lm-infer", config(tmp_path, checkpoint=export), campaign="i")
    assert result["ok"] == 1
    by_action = {e.action: e for e in events}
    assert [e.action for e in events if e.action in ("prefill", "decode")] == ["prefill", "decode"]
    # 2 rounds × 6 prompts × 8 tokens; 3 rounds × 6 prompts × 5 generated (batches of 4 and 2)
    assert by_action["prefill"].fields["prompt_tokens"] == by_action["prefill"].fields["tokens"] == 96
    assert by_action["decode"].fields["generated_tokens"] == by_action["decode"].fields["tokens"] == 90
    assert by_action["prefill"].end_ns <= by_action["decode"].start_ns
    assert by_action["create_model"].fields["weights"] == str(export)


def test_lm_infer_without_a_checkpoint_says_why_weights_are_random(tmp_path):
    _, events = run(tmp_path, "lm-infer", config(tmp_path))
    create = next(e for e in events if e.action == "create_model")
    assert create.fields["weights"] == "random" and "lm-train" in create.fields["fallback_reason"]


def test_lm_train_with_two_gloo_processes(tmp_path):
    result, events = run(tmp_path, "lm-train", config(tmp_path, processes=2))
    assert result["ok"] == 1
    epochs = [e for e in events if e.action == "epoch"]
    # events from rank 0 only (one per epoch), tokens of both ranks: 2 × 640
    assert [e.fields["tokens"] for e in epochs] == [1280, 1280]
    create = next(e for e in events if e.action == "create_model")
    assert create.fields["processes"] == 2
    settings = next(e for e in events if e.action == "run").fields
    assert (settings["processes"], settings["precision"], settings["batch_size"]) == (2, "fp32", 4)


def test_lm_settings_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from mltelemetry.cli import app
    common = ["campaign", "run", "--store", str(tmp_path / "s.db"), "--scenario", "lm-train", "--runs", "1",
              "--pause", "0", "--device", "cpu", "--batch-size", "2", "--workdir", str(tmp_path),
              "--export-dir", str(tmp_path / "exports"), "--no-progress"]
    tiny = ["--lm", "d_model=16", "--lm", "layers=1", "--lm", "heads=2", "--lm", "context=16", "--lm",
            "steps_per_epoch=2", "--lm", "max_epochs=1", "--lm", "corpus_bytes=50000", "--lm", "eval_batches=1",
            "--lm", "target_val_loss=none", "--lm", "prompt_tokens=4", "--lm", "new_tokens=4"]
    bad = CliRunner().invoke(app, [*common, "--campaign", "bad", "--lm", "width=3"])
    assert bad.exit_code == 2 and "--lm takes NAME=VALUE" in bad.output
    bad = CliRunner().invoke(app, [*common, "--campaign", "bad", "--lm", "layers=two"])
    assert bad.exit_code == 2 and "layers: 'two' is not a int" in bad.output
    ok = CliRunner().invoke(app, [*common, "--campaign", "ok", *tiny])
    assert ok.exit_code == 0, ok.output
    with Store(tmp_path / "s.db") as store:
        events = store.events("ok")
    run = next(e for e in events if e.action == "run")
    # the run's settings come back from its child process: d_model 16, 1 layer, context 16, batch 2
    assert (run.status, run.fields["d_model"], run.fields["layers"], run.fields["context"]) == ("ok", 16, 1, 16)
    # one epoch of 2 steps × batch 2 × context 16 = 64 tokens
    assert [e.fields["tokens"] for e in events if e.action == "epoch"] == [64]
