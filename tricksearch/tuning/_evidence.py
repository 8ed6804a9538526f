"""The evidence a search hands over with its recipe, as data (results.json, the recipe's
provenance) and as the lines the user reads.

    recipe / baseline      val and test per seed, mean ± std (the exported recipe and the
                           user's budget with no trick)
    verdict                the exported recipe vs the baseline on the held-out test split:
                           paired gain with a 95 % interval and one word (better beyond noise,
                           not distinguishable, worse); "no trick helped beyond noise" when the
                           baseline is exported, with the best candidate's own comparison
    tuned_baseline         the same, against the best lr / batch size without tricks
    minimal                the tricks kept and dropped by the ablation path, and the full winner
    small_data             the smallest gain the val and test splits can show, when they are small
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tricksearch.tuning._candidates import evidence
from tricksearch.tuning._decide import Decision
from tricksearch.tuning._verdict import METHOD, NOT_DISTINGUISHABLE, Verdict, detectable_gain

if TYPE_CHECKING:
    from tricksearch.data import DatasetSplits

__all__ = ["NO_TRICK_HELPED", "SMALL_SPLIT", "evidence_summary", "verdict_lines"]

NO_TRICK_HELPED = "no trick helped beyond noise"
#: A split smaller than this gets a note on the smallest gain it can show.
SMALL_SPLIT = 500


def _labelled(row: Mapping[str, Any]) -> dict[str, Any]:
    return evidence(row) | {"label": row["label"], "tricks": sorted(row["recipe"].tricks_on())}


def evidence_summary(
    decision: Decision, metric: str, data: DatasetSplits, cv: int | None = None
) -> dict[str, Any]:
    """The evidence keys of results.json's summary (see the module docstring)."""
    rec, base = decision.recommended, decision.baseline
    rec_ev, base_ev = evidence(rec), evidence(base)
    helped = decision.trick_helped
    compared = rec if helped else decision.leader
    test = decision.test_verdict(compared, base, metric) if compared is not None else None
    if not helped:
        word = NO_TRICK_HELPED
    else:
        word = test.verdict if test is not None else NOT_DISTINGUISHABLE
    out: dict[str, Any] = {
        "seeds": list(decision.seeds),
        "recipe": rec_ev,
        "baseline": base_ev,
        "gain": {
            "val_acc": rec_ev["val_acc_mean"] - base_ev["val_acc_mean"],
            "test_acc": rec_ev["test_acc_mean"] - base_ev["test_acc_mean"],
        },
        "verdict": {
            "summary": word,
            "exported": "minimal" if decision.minimal else ("winner" if helped else "baseline"),
            "test": None if test is None else test.to_dict(),
            "selection": None if decision.selection is None else decision.selection.to_dict(),
            "leader": None if decision.leader is None else decision.leader["label"],
            "method": METHOD,
        },
        "leader": None if decision.leader is None else _labelled(decision.leader),
        "tuned_baseline": None,
        "minimal": None,
        "small_data": small_data(data, base_ev["test_acc_mean"], cv),
    }
    if decision.tuned is not None:
        vs = decision.test_verdict(rec, decision.tuned, metric)
        budget = decision.tuned["recipe"].budget
        out["tuned_baseline"] = _labelled(decision.tuned) | {
            "lr": budget.lr,
            "batch_size": budget.batch_size,
            "verdict": vs.to_dict(),
        }
    if decision.path is not None:
        out["minimal"] = {
            "tricks": list(decision.path.minimal),
            "removed": list(decision.path.removed),
            "full": _labelled(decision.winner),
            "path": decision.path.to_dict(),
        }
    return out


def small_data(
    data: DatasetSplits, accuracy: float, cv: int | None = None
) -> dict[str, Any] | None:
    """For val or test splits under :data:`SMALL_SPLIT` samples: their sizes and the smallest
    accuracy gain each can tell from noise (:func:`detectable_gain` at the baseline's accuracy).
    With ``cv`` folds the val score is measured on all of train + val."""
    n_val, n_test = len(data.y_val), len(data.y_test)
    if cv:
        n_val += len(data.y_train)
    if min(n_val, n_test) >= SMALL_SPLIT:
        return None
    acc = accuracy if accuracy == accuracy else 0.5  # NaN when the baseline failed
    return {
        "val": n_val,
        "test": n_test,
        "detectable_val_gain": detectable_gain(n_val, acc),
        "detectable_test_gain": detectable_gain(n_test, acc),
        "cv": cv,
    }


def _interval(v: Mapping[str, Any]) -> str:
    """A stored verdict (``Verdict.to_dict``) as ``Verdict.interval_text`` writes it."""
    return Verdict(**v).interval_text()


def _ms(ev: Mapping[str, Any], split: str = "test") -> str:
    return f"{ev[f'{split}_acc_mean']:.4f} ± {ev[f'{split}_acc_std']:.4f}"


def verdict_lines(summary: Mapping[str, Any]) -> list[str]:
    """The evidence in a few lines (closing lines, ``show``): the verdict with its interval, the
    tuned baseline, the minimal recipe, small-split warnings."""
    verdict = summary.get("verdict") or {}
    rec, base = summary["recipe"], summary["baseline"]
    lines: list[str] = []
    test = verdict.get("test")
    if verdict.get("exported") == "baseline":
        lines.append(f"verdict: {NO_TRICK_HELPED}; the baseline is the recipe")
        leader = summary.get("leader")
        if leader and test:
            sel = verdict.get("selection")
            lines.append(
                f"  best candidate ({leader['label']}: {', '.join(leader['tricks']) or 'no trick'})"
                + (f": val gain {_interval(sel)}, {sel['verdict']}" if sel else "")
                + f"; test gain {_interval(test)}, {test['verdict']}"
            )
        lines.append(f"  test acc baseline {_ms(base)}")
    else:
        lines.append(f"verdict: {verdict.get('summary', '?')} (test split, held out)")
        lines.append(f"  test acc {_ms(rec)} vs baseline {_ms(base)}")
        if test:
            lines.append(f"  gain {_interval(test)}")
    tuned = summary.get("tuned_baseline")
    if tuned:
        v = tuned["verdict"]
        lines.append(
            f"  vs tuned baseline (lr {tuned['lr']:g}, batch size {tuned['batch_size']}, no "
            f"trick; test acc {_ms(tuned)}): gain {_interval(v)}, {v['verdict']}"
        )
    minimal = summary.get("minimal")
    if minimal and minimal.get("removed"):
        full = minimal["full"]
        lines.append(
            f"  minimal recipe: keeps {', '.join(minimal['tricks']) or 'no trick'} of the "
            f"winner's {len(full['tricks'])}; dropped {', '.join(minimal['removed'])} (no "
            f"difference beyond noise on val); the full winner: test acc {_ms(full)}"
        )
    if len(summary.get("seeds") or []) < 2:
        lines.append(
            "  note: with one seed there is no interval, so no gain can be shown beyond noise "
            "and the baseline stays the recipe; use --seeds 3 (or auto)"
        )
    small = summary.get("small_data")
    if small:
        lines.append(
            f"  note: small splits (val {small['val']}, test {small['test']} samples): a test "
            f"gain below ~{small['detectable_test_gain']:.3f} (val ~"
            f"{small['detectable_val_gain']:.3f}) cannot be told from noise at this size"
            + ("" if small.get("cv") else "; --cv 5 judges on all of train + val")
        )
    return lines
