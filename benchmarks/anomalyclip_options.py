"""AnomalyCLIP's official defaults beside vadnb's named options, on the campus
perfect-perception inputs (notebook 50, section 8): frame AUC / AP of each variant.

    VADNB_PROFILE=tiny python benchmarks/anomalyclip_options.py [--epochs 30] [--batch-size 64]

Each variant changes one Config field from the official default; the numbers go into the
"measured effect" of vadnb/anomalyclip/differences.py (with the command that gave them).
"""

from __future__ import annotations

import argparse

from vadnb import anomalyclip, models
from vadnb.data import load_campus

#: variant name -> Config fields changed from the official defaults
VARIANTS = {
    "official defaults": {},
    "drop_last=False": {"drop_last": False},
    'lr_schedule="per_step"': {"lr_schedule": "per_step"},
    "smooth_within_videos=True": {"smooth_within_videos": True},
    "all three (vadnb's old defaults)": {"drop_last": False, "lr_schedule": "per_step",
                                         "smooth_within_videos": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    campus = load_campus()
    clip = models.load("clip", profile="tiny")
    oracle = anomalyclip.oracle_clip(campus, text_clip=clip, seed=args.seed, stride=args.stride)
    videos = campus.videos[campus.videos["split"].isin(["train", "test"])]
    features = {r.name: anomalyclip.extract_features(r.path, oracle, args.stride, progress=False)
                for r in videos.itertuples()}
    base = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                feature_stride=args.stride, warmup_epochs=max(1, args.epochs // 10),
                emb_size=64, device="cpu")
    print(f"campus oracle features, {base}")
    print(f"{'variant':30s} {'AUC':>6s} {'AP':>6s} {'steps':>6s}")
    for name, change in VARIANTS.items():
        cfg = anomalyclip.Config(**{**base, **change})
        model, curves = anomalyclip.train(campus, "train", cfg, backends={"clip": oracle},
                                          features=features, progress=False)
        ev = anomalyclip.evaluate(model, campus, "test", features=features)
        print(f"{name:30s} {ev.auc:6.3f} {ev.ap:6.3f} {len(curves):6d}")


if __name__ == "__main__":
    main()
