"""Every way vadnb's AnomalyCLIP departs from the official code (lucazanella/AnomalyCLIP):
what, why and the measured effect (notebook 50 renders it)."""

from __future__ import annotations

from ..stages import Difference

#: How the measured effects below were obtained (issue 23).
_COMMAND = ("`VADNB_PROFILE=tiny python benchmarks/anomalyclip_options.py` and `--batch-size 6` "
            "(campus perfect-perception inputs, 30 epochs, lr 1e-3, stride 2)")

#: Every way vadnb's AnomalyCLIP departs from lucazanella/AnomalyCLIP (notebook 50 renders it).
DIFFERENCES: list[Difference] = [
    Difference(
        what="Option `smooth_within_videos=True` (default False, the official): smoothness "
             "sums squared score steps inside each abnormal video. The official code flattens "
             "the abnormal half of the batch first, so the step from one video's last frame "
             "to the next video's first frame is penalised too.",
        why="that jump says nothing about either video.",
        effect="31 of ~16,000 terms in a 64-video batch, weighted 8e-4: frame AUC / AP "
               "0.848 / 0.769 either way at batch 64, 0.820 / 0.679 either way at batch 6; "
               "measured with " + _COMMAND + "."),
    Difference(
        what="Option `lr_schedule=\"per_step\"` (default \"per_epoch\", the official): the "
             "warm-up and cosine move every step, starting at lr / warm-up steps. The official "
             "schedule changes once per epoch and runs epoch 0 at lr exactly 0: that epoch "
             "still updates BatchNorm's running statistics and AdamW's moment estimates, "
             "but no weight (AdamW's decay is scaled by lr too).",
        why="the first epoch then trains too, and the lr ramps smoothly.",
        effect="frame AUC / AP 0.848 / 0.769 (official) -> 0.865 / 0.817 at batch 64, "
               "0.820 / 0.679 -> 0.823 / 0.702 at batch 6; measured with " + _COMMAND + "."),
    Difference(
        what="Option `drop_last=False` (default True, the official): one more step per "
             "epoch, the larger group's incomplete last half-batch filled by repeating "
             "videos, so every video is seen each epoch. The official loaders drop that "
             "half-batch (floor(larger group / half batch) steps) and cycle the shorter group.",
        why="with few videos the dropped remainder is a large share of the data.",
        effect="at batch 6 (2 steps per epoch instead of 1) frame AUC / AP 0.820 / 0.679 "
               "(official) -> 0.880 / 0.856; none at batch 64 (1 step either way); all three "
               "options together 0.890 / 0.865; measured with " + _COMMAND + "."),
    Difference(
        what="When both groups have fewer videos than half a batch, the halves shrink to the "
             "larger group's size; a group smaller than half a batch fills its half by "
             "repeating videos. The official loaders (drop_last) give no batch then.",
        why="the campus lesson has 7 training videos; the official recipe would train 0 steps.",
        effect="none on the official datasets (every group has more than 32 videos); on small "
               "data a step sees fewer videos than batch_size."),
    Difference(
        what="The reversible axial transformer runs its two-stream coupling with ordinary "
             "autograd instead of the reversible backward pass.",
        why="simpler code, no custom autograd function.",
        effect="none on outputs (the temporal model matches the official computation to 1e-5 at "
               "depth 1 and 2, tests/test_anomalyclip.py); more activation memory in training."),
    Difference(
        what="Prompts are built for the anomaly classes only; the official code also encodes "
             "a Normal prompt and drops its row before use.",
        why="the Normal row never reaches the loss, so it is wasted work.",
        effect="none: identical directions (its context row never gets a gradient); the "
               "release converter drops that row."),
    Difference(
        what="A video's class is the class with the largest summed p(c) over its frames "
             "(threshold-free); the official rule predicts Normal for frames below a score "
             "threshold chosen by Youden's J on the test ROC and reports per-frame top-1/5.",
        why="a threshold tuned on the test labels leaks them into the reported numbers.",
        effect="the official numbers are optimistic by an unmeasured margin; evaluate() "
               "reports both: top1_video / top5_video (ours) and paper_top1_frame / "
               "paper_top5_frame with paper_threshold (the official rule, tuned on test).",
        flag="Evaluation.paper_top1_frame"),
    Difference(
        what="The NLL takes log(max(p, 1e-8)); the official takes log(p).",
        why="a probability that underflows to 0 would give an infinite loss.",
        effect="none unless a probability falls below 1e-8."),
    Difference(
        what="Features vadnb extracts come from vadnb's video reader and open_clip's OpenAI "
             "ViT-B/16 with its preprocessing; the release's come from OpenAI's clip package "
             "on the authors' extracted frames.",
        why="one video pipeline for the whole suite.",
        effect="same weights and scale (raw visual output); resizing and decoding may differ "
               "slightly: not measured. Released features load with load_features / "
               "release_benchmark."),
    Difference(
        what="feature_stride > 1 embeds every k-th frame and repeats scores back; the "
             "official configs embed every frame (stride 1, the default here).",
        why="a CPU or a T4 can then afford the lesson.",
        effect="coarser scores; not measured on a benchmark.",
        flag="feature_stride=1"),
    Difference(
        what="Segment offsets and dropout masks are drawn from one numpy Generator seeded by "
             "Config.seed (the official uses numpy's global state and torch.bernoulli).",
        why="a run is reproducible from its Config.",
        effect="same distributions, different draws."),
    Difference(
        what="run() adds a table of 16-frame segments (mean score, most probable class) to "
             "the per-frame output for the explorer.",
        why="the explorer and Detection show intervals.",
        effect="none on frame scores or metrics."),
]
