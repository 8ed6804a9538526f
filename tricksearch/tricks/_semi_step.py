"""The training steps of the ``semi`` family (maths in ``_semi_maths``, formulas in ``semi``).

``engine.fit`` calls ``trainer.step(run, xb, yb, epoch, optimizer_step)`` in place of its own step
when a semi trick is on: the labelled batch goes through the recipe's pipeline (augmentation,
multi-scale, mixing, adversarial examples, distillation's teacher, the recipe's loss), the
unlabelled terms are added, and ``optimizer_step`` (backward, clipping, step, EMA) runs once.

Sampling: the unlabelled batches (and self-training's pseudo-labelled ones, tri-training's
bootstrap batches) are the k-th slice of an endless stream of seeded permutations, k the global
step (:class:`Stream`), so a resumed training draws the same samples without a saved position;
self-training's pseudo-label set is the trainer's state (``state_dict``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tricksearch.data.loader import epoch_permutation, to_float
from tricksearch.errors import ConfigError
from tricksearch.tricks._semi_maths import (
    agreement_labels,
    confident_labels,
    fixmatch_unlabelled_loss,
    masked_cross_entropy,
    select_pseudo_labels,
)
from tricksearch.tricks._semi_members import member_list
from tricksearch.tricks._semi_views import noise_view, strong_view, weak_view

if TYPE_CHECKING:
    from tricksearch.engine.fit import _Run

__all__ = ["Stream", "make_trainer", "salted_seed"]

StepResult = tuple[Tensor, Tensor, Tensor]

#: Tri-training's first fraction of the steps trains each member on its bootstrap sample alone,
#: as Zhou & Li (2005) start from classifiers trained on the labelled bootstraps: agreement of
#: untrained members is noise (measured: threshold 0 from step 0 lost 6-7 points on digits).
TRI_WARMUP = 1 / 3
OptimizerStep = Callable[[Any, Tensor], None]


def salted_seed(seed: int, tag: str) -> int:
    """A 63-bit seed from the recipe seed and a tag (independent streams per use)."""
    digest = hashlib.blake2b(f"tricksearch-semi:{seed}:{tag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Stream:
    """Batches of ``count`` indices of ``range(n)``: the k-th slice of the concatenation of
    seeded permutations (``data.loader.epoch_permutation(n, seed, p)``, p = 0, 1, …)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, Tensor] = {}

    def _perm(self, p: int) -> Tensor:
        if p not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k >= p - 1}
            self._perms[p] = epoch_permutation(self.n, self.seed, p)
        return self._perms[p]

    def batch(self, k: int, count: int) -> Tensor:
        start = k * count
        first, last = start // self.n, (start + count - 1) // self.n
        order = torch.cat([self._perm(p) for p in range(first, last + 1)])
        offset = start - first * self.n
        return order[offset : offset + count]


# --- shared pieces -----------------------------------------------------------------------------
def _float(run: _Run, x: Tensor, epoch: int) -> Tensor:
    x = to_float(x, run.data.mean, run.data.std)
    return x if run.parts.multiscale is None else run.parts.multiscale(x, epoch)


def _labelled(run: _Run, model: nn.Module, x: Tensor, yb: Tensor, epoch: int):
    """The recipe's float pipeline after the view: multi-scale, mixing, adversarial examples."""
    parts, target = run.parts, yb
    if parts.mixer is not None:
        x, target = parts.mixer(x, yb)
    if parts.adversarial is not None:
        x = parts.adversarial(model, x, target, F.cross_entropy)
    return x, target


def _forward(run: _Run, model: nn.Module, *xs: Tensor) -> tuple[list[Tensor], Tensor | None]:
    """One forward of the concatenated batches (BatchNorm sees them together), split again, in
    float32; and the teacher's logits of the first (labelled) batch."""
    with run.parts.precision.autocast(run.device):
        logits = model(torch.cat(xs)).float()
        teacher = None
        if run.teacher is not None:
            with torch.no_grad():
                teacher = run.teacher(xs[0]).float()
    return list(logits.split([len(x) for x in xs])), teacher


@torch.no_grad()
def _predict(run: _Run, model: nn.Module, x: Tensor) -> Tensor:
    """Softmax of ``model`` on ``x`` as it is evaluated (eval mode: BatchNorm's running
    statistics, no dropout), without gradient: how co- and tri-training's members label the pool
    for the others, as the trained classifiers of the original algorithms do. (In train mode,
    with the batch statistics of the labelled + unlabelled batch, members at 90 % eval accuracy
    labelled digits' pool batches at ~57 % and tri-training collapsed.)"""
    was = model.training
    model.eval()
    with run.parts.precision.autocast(run.device):
        probs = F.softmax(model(x).float(), dim=-1)
    model.train(was)
    return probs


def _pool(run: _Run, idx: Tensor) -> Tensor:
    pool = run.data.x_unlabeled
    if pool is None or len(pool) == 0:
        raise ConfigError("semi: the data has no unlabelled pool (x_unlabeled).")
    return pool[idx].to(run.device)


class _Trainer:
    """What every semi procedure shares: its parameters, seed, batch size and pool stream."""

    name = ""

    def __init__(self, params: dict[str, Any], **setup: Any) -> None:
        self.params = dict(params)
        self.num_classes: int = setup["num_classes"]
        self.class_counts: Tensor = setup["class_counts"]
        self.total_steps: int = setup["total_steps"]
        self.seed: int = setup["seed"]
        self.batch_size: int = setup["batch_size"]
        self._stream: Stream | None = None

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({inner})"

    def unlabelled(self, run: _Run, count: int) -> Tensor:
        """The unlabelled samples of this step (uint8 images or float), on the device."""
        n = run.data.unlabeled_count
        if self._stream is None or self._stream.n != n:
            self._stream = Stream(max(n, 1), salted_seed(self.seed, "pool"))
        return _pool(run, self._stream.batch(run.step, count))

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method") != self.name:
            raise ConfigError(
                f"resume: the training state and the recipe differ in semi.{self.name}."
            )

    def step(self, run: _Run, xb: Tensor, yb: Tensor, epoch: int, opt: OptimizerStep) -> StepResult:
        raise NotImplementedError


class FixMatch(_Trainer):
    name = "fixmatch"

    def step(self, run: _Run, xb: Tensor, yb: Tensor, epoch: int, opt: OptimizerStep) -> StepResult:
        p, aug = self.params, run.parts.augment
        if xb.ndim != 4:
            raise ConfigError("semi.fixmatch: works on images [B, C, H, W] only.")
        u = self.unlabelled(run, p["mu"] * self.batch_size)
        x = _float(run, aug(xb, epoch) if aug is not None else xb, epoch)
        x, target = _labelled(run, run.net, x, yb, epoch)
        weak = _float(run, weak_view(u, aug, epoch), epoch)
        strong = _float(run, strong_view(u, aug, epoch), epoch)
        (logits, lw, ls), teacher = _forward(run, run.net, x, weak, strong)
        lu, _mask = fixmatch_unlabelled_loss(lw, ls, p["threshold"])
        loss = run.parts.loss(logits, target, teacher_logits=teacher) + p["lambda_u"] * lu
        opt(run, loss)
        return loss, logits, target


class SelfTraining(_Trainer):
    name = "self_training"

    def __init__(self, params: dict[str, Any], **setup: Any) -> None:
        super().__init__(params, **setup)
        t, r = self.total_steps, params["rounds"]
        self.boundaries = sorted({round(i * t / (r + 1)) for i in range(1, r + 1)} - {0, t})
        self.rounds_done = 0
        self.round_start = 0
        self.pseudo_idx = torch.zeros(0, dtype=torch.long)
        self.pseudo_y = torch.zeros(0, dtype=torch.long)
        self._pseudo_key: tuple[int, int] | None = None
        self._pseudo_stream: Stream | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "rounds_done": self.rounds_done,
            "round_start": self.round_start,
            "pseudo_idx": self.pseudo_idx.clone(),
            "pseudo_y": self.pseudo_y.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounds_done = int(state["rounds_done"])
        self.round_start = int(state["round_start"])
        self.pseudo_idx, self.pseudo_y = state["pseudo_idx"].long(), state["pseudo_y"].long()

    def _pseudo_batch(self, step: int) -> Tensor:
        """This step's indices into the pseudo-labelled set: the round's seeded stream, made once
        per round (not per step)."""
        key = (len(self.pseudo_idx), self.rounds_done)
        if self._pseudo_key != key:
            self._pseudo_stream = Stream(key[0], salted_seed(self.seed, f"pseudo{key[1]}"))
            self._pseudo_key = key
        return self._pseudo_stream.batch(step - self.round_start, self.batch_size)

    @torch.no_grad()
    def label_pool(self, run: _Run) -> None:
        """Label the pool with the evaluated model (eval mode) and keep the selection."""
        model, pool = run.eval_net, run.data.x_unlabeled
        was_training = model.training
        model.eval()
        probs = []
        for start in range(0, len(pool), 1024):
            x = to_float(pool[start : start + 1024].to(run.device), run.data.mean, run.data.std)
            with run.parts.precision.autocast(run.device):
                probs.append(F.softmax(model(x).float(), dim=-1).cpu())
        model.train(was_training)
        run.net.train()
        self.pseudo_idx, self.pseudo_y = select_pseudo_labels(
            torch.cat(probs),
            self.params["threshold"],
            class_balance=self.params["class_balance"],
            prior=self.class_counts,
        )
        self.round_start = run.step

    def step(self, run: _Run, xb: Tensor, yb: Tensor, epoch: int, opt: OptimizerStep) -> StepResult:
        due = sum(b <= run.step for b in self.boundaries)
        if due > self.rounds_done:
            self.label_pool(run)
            self.rounds_done = due
        aug = run.parts.augment
        x = _float(run, aug(xb, epoch) if aug is not None else xb, epoch)
        x, target = _labelled(run, run.net, x, yb, epoch)
        n = len(self.pseudo_idx)
        if n == 0:
            (logits,), teacher = _forward(run, run.net, x)
            loss = run.parts.loss(logits, target, teacher_logits=teacher)
        else:
            pick = self._pseudo_batch(run.step)
            xp = _pool(run, self.pseudo_idx[pick])
            xp = _float(run, aug(xp, epoch) if aug is not None and xp.ndim == 4 else xp, epoch)
            (logits, lp), teacher = _forward(run, run.net, x, xp)
            yp = self.pseudo_y[pick].to(run.device)
            loss = run.parts.loss(logits, target, teacher_logits=teacher)
            loss = loss + self.params["weight"] * F.cross_entropy(lp, yp)
        opt(run, loss)
        return loss, logits, target


def _co_views(i: int, x: Tensor, run: _Run, epoch: int) -> Tensor:
    """Co-training's view ``i`` of a raw batch, as the float model input."""
    aug = run.parts.augment
    if x.ndim == 4:
        view = weak_view(x, aug, epoch) if i == 0 else strong_view(x, aug, epoch)
        return _float(run, view, epoch)
    x = _float(run, x, epoch)
    return x if i == 0 else noise_view(x)


class CoTraining(_Trainer):
    name = "co_training"

    def step(self, run: _Run, xb: Tensor, yb: Tensor, epoch: int, opt: OptimizerStep) -> StepResult:
        members = member_list(run.net)
        u = self.unlabelled(run, self.batch_size)
        views = [_co_views(i, u, run, epoch) for i in range(len(members))]
        # member i labels the pool (its own view, as evaluated) for the other member
        probs = [_predict(run, member, view) for member, view in zip(members, views, strict=True)]
        out, sup = [], []
        for i, member in enumerate(members):
            x, target = _labelled(run, member, _co_views(i, xb, run, epoch), yb, epoch)
            (logits, lu), teacher = _forward(run, member, x, views[i])
            sup.append(run.parts.loss(logits, target, teacher_logits=teacher))
            out.append((logits, target, lu))
        loss = torch.stack(sup).sum()
        for i in range(len(members)):
            labels, mask = confident_labels(probs[i], self.params["threshold"])
            other = out[1 - i][2]
            loss = loss + self.params["weight"] * masked_cross_entropy(other, labels, mask)
        opt(run, loss)
        return loss, out[0][0], out[0][1]


class TriTraining(_Trainer):
    name = "tri_training"

    def __init__(self, params: dict[str, Any], **setup: Any) -> None:
        super().__init__(params, **setup)
        self._boot: list[tuple[Tensor, Stream]] | None = None

    def bootstraps(self, n: int) -> list[tuple[Tensor, Stream]]:
        """Each member's fixed bootstrap sample of the ``n`` labelled samples, and its stream."""
        if self._boot is None or len(self._boot[0][0]) != n:
            self._boot = []
            for i in range(3):
                gen = torch.Generator().manual_seed(salted_seed(self.seed, f"bootstrap{i}"))
                sample = torch.randint(0, n, (n,), generator=gen)
                self._boot.append((sample, Stream(n, salted_seed(self.seed, f"boot-order{i}"))))
        return self._boot

    def step(self, run: _Run, xb: Tensor, yb: Tensor, epoch: int, opt: OptimizerStep) -> StepResult:
        members, aug, data = member_list(run.net), run.parts.augment, run.data
        # the first TRI_WARMUP of the steps: each member on its bootstrap alone, no pool
        warm = run.step < self.total_steps * TRI_WARMUP
        pool: tuple[Tensor, ...] = ()
        if not warm:
            u = self.unlabelled(run, self.batch_size)
            pool = (_float(run, weak_view(u, aug, epoch), epoch),)
        out, loss = [], torch.zeros((), device=run.device)
        for member, (sample, stream) in zip(
            members, self.bootstraps(len(data.y_train)), strict=True
        ):
            idx = sample[stream.batch(run.step, len(yb))]
            xi, yi = data.x_train[idx].to(run.device), data.y_train[idx].to(run.device)
            x = _float(run, aug(xi, epoch) if aug is not None else xi, epoch)
            x, target = _labelled(run, member, x, yi, epoch)
            (logits, *lu), teacher = _forward(run, member, x, *pool)
            loss = loss + run.parts.loss(logits, target, teacher_logits=teacher)
            out.append((logits, target, lu))
        if not warm:
            probs = torch.stack([_predict(run, member, pool[0]) for member in members])
            labels, masks = agreement_labels(probs, self.params["threshold"])
            for i, (_, _, lu) in enumerate(out):
                loss = loss + self.params["weight"] * masked_cross_entropy(
                    lu[0], labels[i], masks[i]
                )
        opt(run, loss)
        return loss, out[0][0], out[0][1]


_TRAINERS: dict[str, type[_Trainer]] = {
    "self_training": SelfTraining,
    "co_training": CoTraining,
    "tri_training": TriTraining,
    "fixmatch": FixMatch,
}


def make_trainer(name: str, params: dict[str, Any], **setup: Any) -> _Trainer:
    """The trainer of semi trick ``name`` (setup: num_classes, class_counts, total_steps, seed,
    batch_size)."""
    return _TRAINERS[name](params, **setup)
