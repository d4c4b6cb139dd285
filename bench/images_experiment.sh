#!/usr/bin/env bash
# The documented CPU image run: the rectified-flow baseline on `digits`
# (8x8, preset digits-cpu: UNet 32 ch, mult 1,2, 2 blocks, 0.98M parameters),
# trained in at most 20 minutes on 2 CPU cores, then the Fréchet distance in the
# digits-classifier-v1 feature space at NFE 1, 2, 4, 8, 100 (Euler) beside the
# train-vs-held-out floor, a sample grid and the x_hat(z_t, t) figure.
#
#   bash bench/images_experiment.sh [OUT]              # the documented run
#   STEPS=20 bash bench/images_experiment.sh /tmp/x    # smoke test (a minute)
#
# Knobs: STEPS (3000), BATCH (128), THREADS (torch/OpenMP threads, default 1: on a
# 2-core machine shared with other jobs, 2 spinning OpenMP threads ran 6x slower
# than 1 (0.6 vs 4 steps/s); on an idle machine THREADS=2 is faster).
# OUT must not hold a run yet.
set -euo pipefail

OUT=${1:-runs/digits_baseline}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-128}
export OMP_NUM_THREADS=${THREADS:-1}

start=$(date +%s)
straightflow train --data digits --method rectified --steps "$STEPS" --batch-size "$BATCH" \
  --out "$OUT" --ckpt-every 1000 --log-every 100 --progress false
echo "training: $(( $(date +%s) - start )) s for $STEPS steps (OMP_NUM_THREADS=$OMP_NUM_THREADS)" | tee "$OUT/train_time.txt"

straightflow eval "$OUT" --nfe 1,2,4,8,100 --solver euler --json > "$OUT/eval.json"
python - "$OUT" <<'PY'
import json, sys
from straightflow import format_table
out = sys.argv[1]
report = json.load(open(f"{out}/eval.json"))
table = format_table(report)
fd100 = [r["fd"] for r in report["results"] if r["nfe"] == 100][0]
table += f"\nfeatures: {report['features']}; FD at NFE 100 / floor = {fd100 / report['fd_floor']:.2f} (target <= 3)"
open(f"{out}/quality_vs_nfe.txt", "w").write(table + "\n")
print(table)
PY
straightflow plot "$OUT" --kind grid --nfe 100 -n 64 --out "$OUT/grid.png"
straightflow plot "$OUT" --kind xhat --nfe 100 -n 6 --out "$OUT/xhat.png"
straightflow sample "$OUT" --nfe 1 -n 64 --out "$OUT/grid_nfe1.png"
