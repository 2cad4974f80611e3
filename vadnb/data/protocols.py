"""Which method was evaluated on which benchmark, how, and what its paper reported.

A user with a benchmark on disk and a GPU reads this table (notebooks 80 and 90) to know
what to reproduce: the split and loader call, the metric and which average-precision
variant the paper's code computed, the class metrics, and the number in the paper. The
numbers are the papers' own (transcribed from the papers and their repositories, see
``../shared/REFERENCE.md``); nothing here was measured by vadnb.

AP variants: "step" is scikit-learn's ``average_precision_score`` (torchmetrics'
``AveragePrecision`` computes the same); "trapezoid" is ``auc(recall, precision)`` over the
precision-recall curve, which LAVAD's and VERA's evaluation scripts report and which
differs from the step-wise value when many scores are tied.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["protocol_table"]


def protocol_table(method: str | None = None) -> pd.DataFrame:
    """The protocol rows (of one method if given), with the paper's reported number (in %).

    Columns: method, benchmark, split, metric, ap_variant ("step" / "trapezoid", see the
    module docstring), class_metrics, reported (the paper's number, None where there is
    none) and load (the vadnb call that builds that evaluation set).
    """
    from .. import registry

    # read from each method's declaration at call time, so a method registered later appears
    table = pd.DataFrame([{"method": m.name, **row} for m in registry.methods()
                          for row in m.protocols])
    if method is not None:
        known = sorted(table["method"].unique())
        if method not in known:
            raise ValueError(f"no protocol rows for method {method!r}; methods are {known}")
        table = table[table["method"] == method].reset_index(drop=True)
    return table
