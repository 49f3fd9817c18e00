"""edge.finetune.train on the tiny model: the cached-lower-layers forward is exact, runs are reproducible."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.finetune.dataset import IGNORE, FactDataset, build_dataset, make_batch
from edge.finetune.lower_store import LowerStore
from edge.finetune.train import (
    LowerCache,
    PrefixKV,
    StepInfo,
    TrainOptions,
    first_lora_layer,
    load_model,
    lr_at,
    lr_at_fraction,
    run_layers,
    train,
)
from shared.scenario import generate

OPTS = TrainOptions(lr=1e-2, batch_size=4, epochs=2, threads=1, seed=3, top_layers=0.5, warmup_steps=2)


@pytest.fixture(scope="module")
def data(tiny_model: Path) -> FactDataset:
    home = generate(seed=7, homes=1, duration_s=60).homes[0]
    return build_dataset(list(home.static_facts())[:12], tiny_model / "tokenizer.json", 2)


def test_cached_forward_equals_the_plain_model(tiny_model: Path, data: FactDataset) -> None:
    import torch

    model = load_model(tiny_model / "hf", OPTS)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)  # a LoRA that changes the output
        decoder, lm_head = model.base_model.model.model, model.base_model.model.lm_head
        first = first_lora_layer(len(decoder.layers), OPTS.top_layers)
        examples = data.train[:4]
        plain = []  # first: the cache drops the lower layer once every example has been through
        for e in examples:
            logits = model(input_ids=torch.tensor([[*e.prompt, *e.answer]])).logits[0]
            plain.append(logits[len(e.prompt) - 1 : len(e.prompt) - 1 + len(e.answer)])
        cache = LowerCache(decoder, first, data.prefix, examples)
        cache.batch([2, 0])
        assert cache.missing == 2
        rows = cache.batch([0, 1, 2, 3])  # two from the cache, two computed now
        assert cache.missing == 0
        top, kv = list(decoder.layers[first:]), PrefixKV()
        run_layers(decoder, top, cache.prefix_h, 0, kv)
        hidden = decoder.norm(run_layers(decoder, top, rows, cache.prefix_h.shape[1], kv))
        targets = torch.from_numpy(make_batch(examples, len(data.prefix), 2).targets)
        ours = lm_head(hidden[targets != IGNORE])
        # the cached rows are float16 (what the on-disk store keeps): equal up to that rounding
        torch.testing.assert_close(ours, torch.cat(plain), atol=2e-3, rtol=2e-3)
    assert isinstance(decoder.layers[0], torch.nn.Identity)  # every example cached: the lower layer is gone


def test_a_second_round_reuses_the_stored_lower_layers(tiny_model: Path, data: FactDataset, tmp_path: Path) -> None:
    store = LowerStore(tmp_path / "lower_cache.npz", "f" * 64)
    cold = train(load_model(tiny_model / "hf", OPTS), data, OPTS, store=store)
    assert cold.reused_rows == 0 and store.path.exists()
    assert store.path.stat().st_mode & 0o777 == 0o600  # derived from private facts
    warm = train(load_model(tiny_model / "hf", OPTS), data, OPTS, store=store)
    assert warm.reused_rows == len(data.train)
    assert warm.losses == cold.losses  # the stored rows are exactly the ones the first round trained on
    assert all(np.array_equal(cold.tensors[k], warm.tensors[k]) for k in cold.tensors)
    plain = train(load_model(tiny_model / "hf", OPTS), data, OPTS)
    assert plain.losses == cold.losses  # the store changes nothing but the time spent
    changed = replace(data, train=(*data.train[1:], replace(data.train[0], answer=(*data.train[0].answer[:-1], 5, 2))))
    partial = train(load_model(tiny_model / "hf", OPTS), changed, OPTS, store=store)
    assert partial.reused_rows == len(data.train) - 1  # only the changed example runs the lower layers
    first = first_lora_layer(2, OPTS.top_layers)
    assert len(store.load(first, changed.prefix)) == len(data.train)  # rewritten: the old example's row is gone
    elsewhere = LowerStore(store.path, "e" * 64)  # another base model: nothing is trusted
    one_step = replace(OPTS, max_steps=1)
    assert train(load_model(tiny_model / "hf", OPTS), data, one_step, store=elsewhere).reused_rows == 0
    nowhere = LowerStore(tmp_path / "no-such-folder" / "lower_cache.npz", "f" * 64)  # cannot be written
    assert train(load_model(tiny_model / "hf", OPTS), data, one_step, store=nowhere).steps == 1


def test_training_is_deterministic_and_reports_progress(tiny_model: Path, data: FactDataset) -> None:
    seen: list[StepInfo] = []
    first = train(load_model(tiny_model / "hf", OPTS), data, OPTS, seen.append)
    again = train(load_model(tiny_model / "hf", OPTS), data, OPTS)
    assert first.losses == again.losses and first.steps == first.planned_steps == len(seen)
    assert all(np.array_equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
    assert [s.step for s in seen] == list(range(1, first.steps + 1))
    assert first.losses[-1] < first.losses[0]
    other = train(load_model(tiny_model / "hf", OPTS), data, replace(OPTS, seed=4))
    assert other.losses != first.losses


def test_adapter_covers_every_layer_with_zeros_below_the_lora(tiny_model: Path, data: FactDataset) -> None:
    opts = replace(OPTS, epochs=0.5)
    result = train(load_model(tiny_model / "hf", opts), data, opts)
    assert sorted(result.tensors) == sorted(
        f"lora_{k}.{i}.{m}" for k in "AB" for i in (0, 1) for m in ("q_proj", "v_proj", "up_proj", "down_proj")
    )
    assert result.tensors["lora_A.0.q_proj"].shape == (64, 8) and result.tensors["lora_B.1.v_proj"].shape == (8, 32)
    assert not result.tensors["lora_A.0.q_proj"].any()  # layer 0 is below the LoRA layers
    assert result.tensors["lora_A.1.q_proj"].any() and result.tensors["lora_B.1.q_proj"].any()


def test_budgets_stop_the_loop(tiny_model: Path, data: FactDataset) -> None:
    by_steps = train(load_model(tiny_model / "hf", OPTS), data, replace(OPTS, max_steps=3))
    assert by_steps.steps == by_steps.planned_steps == 3 and by_steps.stop_reason == "max_steps"
    by_time = train(load_model(tiny_model / "hf", OPTS), data, replace(OPTS, max_time_s=0.0))
    assert by_time.steps == 1 and by_time.stop_reason == "max_time"


def test_progress_exception_aborts(tiny_model: Path, data: FactDataset) -> None:
    class Stop(Exception):
        pass

    def stop(info: StepInfo) -> None:
        raise Stop

    with pytest.raises(Stop):
        train(load_model(tiny_model / "hf", OPTS), data, OPTS, stop)


def test_learning_rate_schedule() -> None:
    opts = TrainOptions(lr=1.0, warmup_steps=10)
    assert lr_at(5, 100, opts) == pytest.approx(0.5)
    assert lr_at(10, 100, opts) == pytest.approx(1.0)
    assert lr_at(100, 100, opts) == pytest.approx(0.1)
    assert lr_at(500, 100, opts) == pytest.approx(0.1)
    # once the time budget binds, the same cosine follows the share of the budget spent
    assert lr_at_fraction(0.0, opts) == pytest.approx(1.0)
    assert lr_at_fraction(0.5, opts) == pytest.approx(0.55)
    assert lr_at_fraction(1.0, opts) == lr_at_fraction(3.0, opts) == pytest.approx(0.1)


def test_early_stop_watches_the_epoch_mean() -> None:
    from edge.finetune.train import EarlyStop

    converged = EarlyStop(window=2, patience=3, min_loss=0.1)
    assert [converged.update(i, v) for i, v in enumerate([1.0, 0.5, 0.08, 0.05], 1)] == [None, None, None, "converged"]
    flat = EarlyStop(window=2, patience=3, min_loss=0.0)
    verdicts = [flat.update(i, 1.0) for i in range(1, 7)]
    assert verdicts == [None, None, None, None, "plateau", "plateau"]
    improving = EarlyStop(window=1, patience=2, min_loss=0.0)
    assert all(improving.update(i, 1.0 / i) is None for i in range(1, 20))


def test_warm_start_from_an_adapter(tiny_model: Path, data: FactDataset) -> None:
    from edge.finetune.train import adapter_tensors, warm_start_tensors

    trained = train(load_model(tiny_model / "hf", OPTS), data, replace(OPTS, max_steps=3)).tensors
    init = warm_start_tensors(trained, OPTS.rank, OPTS.alpha, OPTS, n_layers=2)
    assert init is not None
    resumed = adapter_tensors(load_model(tiny_model / "hf", OPTS, init), OPTS.targets, OPTS.rank)
    assert all(np.array_equal(resumed[k], trained[k]) for k in trained)
    doubled = warm_start_tensors(trained, OPTS.rank, 2 * OPTS.alpha, OPTS, n_layers=2)  # twice the scale
    assert doubled is not None and np.allclose(doubled["lora_B.1.q_proj"], 2 * trained["lora_B.1.q_proj"])
    assert warm_start_tensors(trained, 4, OPTS.alpha, OPTS, n_layers=2) is None  # another rank
    lower = {**trained, "lora_B.0.q_proj": np.ones_like(trained["lora_B.0.q_proj"])}
    assert warm_start_tensors(lower, OPTS.rank, OPTS.alpha, OPTS, n_layers=2) is None  # LoRA below the trained layers


def test_the_loss_is_a_token_mean_and_every_example_reports_its_own(tiny_model: Path, data: FactDataset) -> None:
    import torch

    from edge.finetune.train import answer_losses

    model = load_model(tiny_model / "hf", OPTS)
    decoder, lm_head = model.base_model.model.model, model.base_model.model.lm_head
    first = first_lora_layer(len(decoder.layers), OPTS.top_layers)
    examples = [data.train[0], data.train[-1]]
    cache = LowerCache(decoder, first, data.prefix, examples)
    batch = make_batch(examples, len(data.prefix), pad_id=2)
    with torch.no_grad():
        loss, per_example = answer_losses(decoder, lm_head, first, cache.prefix_h, cache.batch([0, 1]), batch)
        alone = [
            float(answer_losses(decoder, lm_head, first, cache.prefix_h, cache.batch([i]), one)[0])
            for i, one in enumerate(make_batch([e], len(data.prefix), 2) for e in examples)
        ]
    lengths = [len(e.answer) for e in examples]
    assert per_example.tolist() == pytest.approx(alone, rel=1e-4)
    mean = sum(n * a for n, a in zip(lengths, alone, strict=True)) / sum(lengths)
    assert float(loss) == pytest.approx(mean, rel=1e-4)  # a long answer weighs by its tokens


def test_the_losses_an_adapter_ends_with_steer_the_next_run(tiny_model: Path, data: FactDataset) -> None:
    first = train(load_model(tiny_model / "hf", OPTS), data, OPTS)
    assert first.losses_known == 0
    assert len(first.example_losses) == len(data.train)  # two epochs: every example measured
    assert all(v >= 0 for v in first.example_losses.values())
    learned = {k: 0.0 for k in first.example_losses}  # as if every example were known by heart
    steered = train(load_model(tiny_model / "hf", OPTS), data, OPTS, example_losses=learned)
    assert steered.losses_known == len(data.train)
    assert steered.losses != first.losses  # its epochs draw fewer examples
    off = replace(OPTS, focus_loss=0.0)
    assert train(load_model(tiny_model / "hf", off), data, off, example_losses=learned).losses == (
        train(load_model(tiny_model / "hf", off), data, off).losses
    )  # focus off: every example, every epoch
