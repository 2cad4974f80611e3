"""Which method was evaluated on which benchmark, how, and what its paper reported.

Notebooks 80 and 90 show it so a user with a benchmark and a GPU knows what to reproduce.
The numbers are the papers' own; nothing here was measured by vadnb. AP variants: "step" is
scikit-learn's ``average_precision_score``; "trapezoid" is ``auc(recall, precision)``, which
LAVAD's and VERA's scripts report and which differs when many scores are tied.
"""

from __future__ import annotations

import pandas as pd


def protocol_table(method: str | None = None) -> pd.DataFrame:
    """The protocol rows (of one method if given): method, benchmark, split, metric,
    ap_variant, class_metrics, reported (the paper's number in %, or None) and load."""
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
