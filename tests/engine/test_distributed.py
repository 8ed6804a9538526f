"""Data-parallel training (engine/distributed.py) on CPU: gloo, 2 local processes, tiny digits.

The comparison uses the registry's ``mlp`` (no BatchNorm, no dropout) and a recipe without
random augmentation or mixing: those are the parts of a step that legitimately differ between
one and two replicas (local BatchNorm statistics, per-replica random draws). Everything else —
the global batches, the gradient of their mean loss, the LR schedule — is the same, so the two
runs agree up to the order of float sums.
"""

from __future__ import annotations

import pytest
import torch

from tricksearch.data.loader import DeviceLoader, StreamingLoader, shard_bounds
from tricksearch.engine import fit
from tricksearch.engine.distributed import DataParallel, check_world
from tricksearch.engine.spawn import spawn_fit
from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe


def _mlp_recipe(epochs: int = 2, batch_size: int = 64) -> Recipe:
    return Recipe.from_dict(
        {
            "model": {"name": "mlp"},
            "budget": {"epochs": epochs, "batch_size": batch_size, "lr": 0.1, "seed": 3},
            "runtime": {"threads": 1},
            "schedule": {"warmup": {"epochs": 1.0}},
        }
    )


def test_shards_are_disjoint_contiguous_and_cover_every_batch() -> None:
    x = torch.randint(0, 255, (23, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(23)
    for make in (lambda: DeviceLoader(x, y, 5), lambda: StreamingLoader((x, y), 5)):
        whole = [yb.tolist() for _, yb in make().epoch(2)]
        parts = [[yb.tolist() for _, yb in make().sharded(r, 2).epoch(2)] for r in range(2)]
        assert [a + b for a, b in zip(*parts, strict=True)] == whole
        assert all(set(a).isdisjoint(b) for a, b in zip(*parts, strict=True))
    assert [shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    # a last global batch smaller than the number of replicas is skipped by every replica
    assert len(DeviceLoader(x, y, 11).sharded(0, 2)) == 2
    assert len(DeviceLoader(x, y, 11)) == 3


def test_two_workers_give_the_one_worker_numbers(digits) -> None:
    recipe = _mlp_recipe()
    torch.set_num_threads(1)
    one = fit(recipe, data=digits)
    epochs: list = []
    two = spawn_fit(recipe, 2, data=digits, threads=1, on_epoch=epochs.append)
    assert [m.epoch for m in epochs] == [1, 2]
    for a, b in zip(one.history, two.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5, abs=1e-6)
        assert b.train_acc == pytest.approx(a.train_acc, abs=1e-9)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-5, abs=1e-6)
        assert b.val_acc == pytest.approx(a.val_acc, abs=1e-9)
        assert b.lr == pytest.approx(a.lr)
    assert two.images_seen == one.images_seen  # the replicas together saw every sample
    pairs = zip(one.model.state_dict().items(), two.model.state_dict().values(), strict=True)
    for (name, p), q in pairs:
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("workers", [0, -1, True, "2"])
def test_bad_worker_counts_are_one_line(workers) -> None:
    with pytest.raises((ConfigError, ConfigTypeError)) as err:
        check_world(workers)
    assert "\n" not in str(err.value) and "workers" in str(err.value)


def test_a_batch_the_workers_do_not_divide_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not divide the batch size 65") as err:
        spawn_fit(_mlp_recipe(batch_size=65), 2)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"dist\.rank"):
        DataParallel(2, 2)


def test_a_data_parallel_fit_needs_its_process_group(digits) -> None:
    with pytest.raises(ConfigError, match="process group"):
        fit(_mlp_recipe(epochs=1), data=digits, dist=DataParallel(0, 2))


def test_sync_bn_off_the_gpu_is_plain_batch_norm_and_one_note(digits, capsys) -> None:
    base = Recipe.from_dict(
        {"model": {"name": "cnn-small"}, "budget": {"epochs": 1, "batch_size": 64, "seed": 1}}
    )
    plain = fit(base, data=digits)
    synced = fit(base.with_trick("sync_bn"), data=digits)
    assert [m.as_dict() | {"epoch_seconds": 0} for m in synced.history] == [
        m.as_dict() | {"epoch_seconds": 0} for m in plain.history
    ]
    err = capsys.readouterr().err
    assert err.count("note: model_tweaks.sync_bn") == 1
    assert "SyncBatchNorm needs" in err
