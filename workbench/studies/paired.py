"""Two logged runs compared face by face: their per-face test predictions matched by face id, the
paired differences with intervals, the exact McNemar test and one verdict line."""

from __future__ import annotations

import numpy as np

from workbench.core import stats
from workbench.errors import WorkbenchError
from workbench.tracking import lineage


def matched(run_a: str, run_b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, A's predictions, B's predictions) on the test faces both runs scored, in A's order;
    a one-line refusal when their test sets differ."""
    a, b = lineage.load_predictions(run_a), lineage.load_predictions(run_b)
    only_a, only_b = set(a["id"]) - set(b["id"]), set(b["id"]) - set(a["id"])
    if only_a or only_b or len(a) != len(b):
        raise WorkbenchError(
            f"runs {run_a[:8]} and {run_b[:8]} were tested on different faces ({len(only_a)} of "
            f"{len(a)} only in the first, {len(only_b)} of {len(b)} only in the second); a paired "
            "comparison needs the same test split"
        )
    b = b.set_index("id").loc[a["id"]]
    if not np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
        raise WorkbenchError(
            f"runs {run_a[:8]} and {run_b[:8]}: the same face ids carry different labels "
            "(different datasets under one name); a paired comparison needs the same faces"
        )
    return a["label"].to_numpy(), a["predicted"].to_numpy(), b["predicted"].to_numpy()


def compare_pair(run_a: str, run_b: str) -> stats.Paired:
    return stats.paired(*matched(run_a, run_b))


def describe(result: stats.Paired, name_a: str, name_b: str) -> str:
    """The comparison as a few lines: differences with intervals, discordant faces, the verdict."""

    def diff(d):
        return f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"

    return "\n".join(
        [
            f"A = {name_a}, B = {name_b}: {result.faces} test faces, matched by id",
            f"  accuracy A - B   {diff(result.accuracy)}  (paired bootstrap, 95%)",
            f"  macro-F1 A - B   {diff(result.macro_f1)}",
            f"  discordant faces {result.only_a} only A right, {result.only_b} only B right",
            f"  verdict          {result.verdict}",
        ]
    )
