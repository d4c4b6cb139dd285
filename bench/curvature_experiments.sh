#!/usr/bin/env bash
# The curvature paper's experiments at CPU scale (paper Fig. 4, 5, 7, 8 and Table 2).
#
#   bash bench/curvature_experiments.sh [OUT]          # full runs (hours on 2 CPU cores)
#   TINY=1 bash bench/curvature_experiments.sh [OUT]   # smoke test of every command (minutes)
#
# Every sweep is resumable: rerunning skips the betas already trained and evaluated.
# 2D sweeps use the baseline's steps, batch and network (TrainConfig defaults: MLP
# width 256, depth 3; 3000 steps, batch 256 as in `straightflow demo`); beta = inf
# is the baseline itself (--method rectified). Knobs: STEPS, BATCH, BETAS, DATASETS,
# DIGITS_STEPS, DIGITS_BATCH, DIGITS_BETAS, N, PARTS ("2d table2 digits digits-table2" by default).
set -euo pipefail
PARTS=${PARTS:-2d table2 digits digits-table2}
has() { [[ " $PARTS " == *" $1 "* ]]; }

OUT=${1:-runs/curvature}
NFE=${NFE:-1,2,4,8,100}
if [[ -n "${TINY:-}" ]]; then
  STEPS=${STEPS:-100}; BATCH=${BATCH:-128}; BETAS=${BETAS:-1,inf}; N=${N:-300}
  DIGITS_STEPS=${DIGITS_STEPS:-20}; DIGITS_BETAS=${DIGITS_BETAS:-10,inf}
  SMALL=(--width 32 --depth 2 --progress false)
  DIGITS_SMALL=(--channels 8 --progress false)
else
  STEPS=${STEPS:-3000}; BATCH=${BATCH:-256}; BETAS=${BETAS:-0.3,1,3,10,30,inf}; N=${N:-2000}
  DIGITS_STEPS=${DIGITS_STEPS:-3000}; DIGITS_BETAS=${DIGITS_BETAS:-1,3,10,inf}
  SMALL=(--progress false)
  DIGITS_SMALL=(--progress false)
fi
DIGITS_BATCH=${DIGITS_BATCH:-128}
DATASETS=${DATASETS:-moons 8gaussians checkerboard spirals}
set -x

# Fig. 4, 5, 7, 8 on 2D data: one sweep per dataset -> sweep.md (curvature, W2 at every NFE
# incl. 100, KL, reconstruction W2), curvature_vs_beta.png, quality_vs_nfe.png,
# recon_gap.png, trajectories.png (forward | reverse per beta).
if has 2d; then for d in $DATASETS; do
  straightflow sweep --data "$d" --betas "$BETAS" --steps "$STEPS" --batch-size "$BATCH" \
    --nfe "$NFE" -n "$N" --out "$OUT/2d-$d" "${SMALL[@]}"
  # Fig. 8b: ||z|| under q_phi against the prior, for a low and a moderate beta
  for b in 1 10; do
    if [[ -d "$OUT/2d-$d/beta-$b" ]]; then
      straightflow plot "$OUT/2d-$d/beta-$b" --kind znorm --out "$OUT/2d-$d/znorm-beta-$b.png"
    fi
  done
done; fi

# Table 2 on 2D: the same-size encoder against the small default, at beta = 10 (moons)
if has table2; then
straightflow sweep --data moons --betas 10 --encoder same --steps "$STEPS" --batch-size "$BATCH" \
  --nfe "$NFE" -n "$N" --out "$OUT/2d-moons-encoder-same" "${SMALL[@]}"
fi
has digits || exit 0

# digits (8x8 images, Frechet distance in the dataset's feature space): curvature should
# fall monotonically as beta falls, all below the baseline; beta = 10 at NFE k against the
# baseline at NFE 2k for k in {2, 4} (the paper's "half the NFE" claim) reads off sweep.md.
straightflow sweep --data digits --betas "$DIGITS_BETAS" --steps "$DIGITS_STEPS" --batch-size "$DIGITS_BATCH" \
  --nfe "$NFE" -n "$N" --out "$OUT/digits" "${DIGITS_SMALL[@]}"
straightflow plot "$OUT/digits/beta-10" --kind znorm --out "$OUT/digits/znorm-beta-10.png"
# Fig. 6: x_hat(z_t, t) over t, low beta against the baseline (needs the images plot kind `xhat`)
for b in 1 10 inf; do
  if [[ -d "$OUT/digits/beta-$b" ]]; then
    straightflow plot "$OUT/digits/beta-$b" --kind xhat --out "$OUT/digits/xhat-beta-$b.png" \
      || echo "xhat plot unavailable for beta-$b"
  fi
done
# Table 2 on digits: same-size encoder at beta = 10 (PARTS must name digits-table2)
has digits-table2 || exit 0
straightflow sweep --data digits --betas 10 --encoder same --steps "$DIGITS_STEPS" --batch-size "$DIGITS_BATCH" \
  --nfe "$NFE" -n "$N" --out "$OUT/digits-encoder-same" "${DIGITS_SMALL[@]}"
