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

__all__ = ["PROTOCOLS", "protocol_table"]

#: One row per (method, benchmark) the papers evaluated.
PROTOCOLS: list[dict[str, object]] = [
    # LAVAD (CVPR 2024): training-free, test split only
    dict(method="lavad", benchmark="UCF-Crime", split="test (290)", metric="frame AUC",
         ap_variant="—", class_metrics="—", reported=80.28,
         load="load_ucf_crime(root).subset('test')"),
    dict(method="lavad", benchmark="XD-Violence", split="test (800)", metric="frame AP",
         ap_variant="trapezoid", class_metrics="—", reported=62.01,
         load="load_xd_violence(root).subset('test')"),
    dict(method="lavad", benchmark="XD-Violence", split="test (800)", metric="frame AUC",
         ap_variant="—", class_metrics="—", reported=85.36,
         load="load_xd_violence(root).subset('test')"),
    # AnomalyCLIP (CVIU 2024): weakly supervised, trains on video-level labels
    dict(method="anomalyclip", benchmark="UCF-Crime", split="train 1610 / test 290",
         metric="frame AUC", ap_variant="—",
         class_metrics="mean one-vs-rest AUC/AP over classes, top-1/top-5 video accuracy",
         reported=86.36, load="load_ucf_crime(root, val=None)"),
    dict(method="anomalyclip", benchmark="XD-Violence", split="train 3954 / test 800",
         metric="frame AP", ap_variant="step", class_metrics="as UCF-Crime",
         reported=78.51, load="load_xd_violence(root)"),
    dict(method="anomalyclip", benchmark="ShanghaiTech (weak split)", split="train 238 / test 199",
         metric="frame AUC", ap_variant="—", class_metrics="as UCF-Crime (17 classes)",
         reported=98.07,
         load="load_shanghaitech(root, split='weak', train_list=..., test_list=...)"),
    # VERA (CVPR 2025): learns questions on train, chooses them on val
    dict(method="vera", benchmark="UCF-Crime", split="train 1449 / val 161 / test 290",
         metric="frame AUC", ap_variant="—", class_metrics="—", reported=86.55,
         load="load_ucf_crime(root, val=0.1)  # or val=<VERA's list>"),
    dict(method="vera", benchmark="XD-Violence", split="train / val / test 800",
         metric="frame AUC", ap_variant="—", class_metrics="—", reported=88.26,
         load="load_xd_violence(root, val=<names of VERA's xd_val.json>)"),
    # AnyAnomaly (2025): zero-shot, the user names the anomaly
    dict(method="anyanomaly", benchmark="C-ShT", split="test (ShanghaiTech)",
         metric="frame AUC per anomaly type (C-VAD protocol), averaged", ap_variant="—",
         class_metrics="per type", reported=85.72,
         load="load_cvad(ground_truth_dir, dataset='shanghaitech', anomaly_type=...)"),
    dict(method="anyanomaly", benchmark="C-Ave", split="test (Avenue)",
         metric="frame AUC per anomaly type (C-VAD protocol), averaged", ap_variant="—",
         class_metrics="per type", reported=90.27,
         load="load_cvad(ground_truth_dir, dataset='avenue', anomaly_type=...)"),
    dict(method="anyanomaly", benchmark="Avenue", split="test (21)", metric="frame AUC",
         ap_variant="—", class_metrics="—", reported=87.3, load="load_avenue(root)"),
    dict(method="anyanomaly", benchmark="ShanghaiTech", split="test (107)", metric="frame AUC",
         ap_variant="—", class_metrics="—", reported=79.7, load="load_shanghaitech(root)"),
    dict(method="anyanomaly", benchmark="UBnormal", split="test", metric="frame AUC",
         ap_variant="—", class_metrics="—", reported=74.5, load="load_ubnormal(root)"),
    # the classical baseline: no paper, campus only
    dict(method="classical", benchmark="campus (bundled)", split="test (6)",
         metric="frame AUC, AP", ap_variant="step", class_metrics="per class AUC",
         reported=None, load="load_campus()"),
]


def protocol_table(method: str | None = None) -> pd.DataFrame:
    """The protocol rows (of one method if given), with the paper's reported number (in %).

    Columns: method, benchmark, split, metric, ap_variant ("step" / "trapezoid", see the
    module docstring), class_metrics, reported (the paper's number, None where there is
    none) and load (the vadnb call that builds that evaluation set).
    """
    table = pd.DataFrame(PROTOCOLS)
    if method is not None:
        known = sorted(table["method"].unique())
        if method not in known:
            raise ValueError(f"no protocol rows for method {method!r}; methods are {known}")
        table = table[table["method"] == method].reset_index(drop=True)
    return table
