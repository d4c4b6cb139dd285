#!/usr/bin/env bash
# Class-conditional generation with classifier-free guidance (docs/conditional.md,
# docs/experiments-full.md section 6). Resumable: finished runs, pairs and evals are kept.
#
#   bash bench/conditional_experiments.sh [OUT]              # both parts (about an hour on 2 CPU cores)
#   PARTS=8gaussians bash bench/conditional_experiments.sh   # one part
#
# 8gaussians  a conditional rectified flow (3000 steps, the 2D default budget); eval at NFE 1,2,4,100
#             (overall and per class, with the 1-NN class accuracy) and the nearest-mode accuracy per class.
# digits      a conditional teacher (the documented digits CPU budget: 3000 steps, batch 128), evaluated
#             at guidance 1, 2 and GUIDANCE; 20,000 pairs from it at guidance GUIDANCE (Euler 16); a lines
#             student (3000 steps, batch 128; all t, lr 1e-3 and MSE, pinned: the recorded recipe) evaluated
#             at NFE 1, 2, 4 with its own conditional branch (w = 1, one network evaluation per step); seed
#             spreads and per-class grids at NFE 1 and 100.
set -euo pipefail

OUT=${1:-runs/conditional}
PARTS=${PARTS:-"8gaussians digits"}
GUIDANCE=${GUIDANCE:-2}
SF=${SF:-straightflow}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=${THREADS:-1}
Q="--progress false"

train() {  # train NAME ARGS... (skipped when the run exists)
  local dir=$OUT/$1; shift
  if [ -f "$dir/config.yaml" ]; then echo "skip $dir (exists)"; return; fi
  echo "+ $SF train $* --out $dir"
  $SF train "$@" --out "$dir" $Q > /dev/null
}
evaluate() {  # evaluate NAME NFES FILE [ARGS...]
  local dir=$OUT/$1 nfes=$2 file=$3; shift 3
  if [ -f "$dir/$file" ]; then echo "skip $dir/$file (exists)"; return; fi
  echo "+ $SF eval $dir --nfe $nfes $*"
  $SF eval "$dir" --nfe "$nfes" --json "$@" > "$dir/$file.tmp" && mv "$dir/$file.tmp" "$dir/$file"
  python -c "import json, sys; from straightflow import format_table; print(format_table(json.load(open(sys.argv[1]))))" "$dir/$file"
}

mkdir -p "$OUT"
for part in $PARTS; do
  case $part in
  8gaussians)
    train 8gaussians --data 8gaussians --conditional --steps 3000
    evaluate 8gaussians 1,2,4,100 eval.json -n 2000
    python "$HERE/nearest_mode.py" "$OUT/8gaussians" --nfe 100 -n 2000 --guidance 1
    $SF plot "$OUT/8gaussians" --kind trajectories --nfe 100 --out "$OUT/8gaussians/trajectories.png" ;;
  digits)
    train digits/teacher --data digits --conditional --steps 3000 --batch-size 128 --ckpt-every 1000
    if [ ! -f "$OUT/digits/pairs/manifest.json" ]; then
      echo "+ $SF pairs $OUT/digits/teacher -n 20000 --solver euler --nfe 16 --guidance $GUIDANCE --out $OUT/digits/pairs"
      start=$(date +%s)
      $SF pairs "$OUT/digits/teacher" -n 20000 --solver euler --nfe 16 --guidance "$GUIDANCE" --out "$OUT/digits/pairs" --quiet
      echo "pairs: $(( $(date +%s) - start )) s" | tee "$OUT/digits/pairs_time.txt"
    fi
    train digits/lines --method lines --sampler-steps 0 --t1-fraction none --lr 0.001 --recon mse --pairs "$OUT/digits/pairs" --steps 3000 --batch-size 128 --ckpt-every 1000
    evaluate digits/lines 1,2,4 eval.json
    for w in 1 2 "$GUIDANCE"; do evaluate digits/teacher 1,4,16,100 "eval_w$w.json" --guidance "$w"; done
    python "$HERE/seed_spread.py" "$OUT/digits/teacher" --nfe 100 --guidance "$GUIDANCE" --seeds 4
    python "$HERE/seed_spread.py" "$OUT/digits/lines" --nfe 1 --seeds 4
    for nfe in 1 100; do
      $SF plot "$OUT/digits/teacher" --kind grid --nfe "$nfe" --guidance "$GUIDANCE" -n 10 --out "$OUT/digits/teacher_grid_nfe$nfe.png"
    done
    $SF plot "$OUT/digits/lines" --kind grid --nfe 1 -n 10 --out "$OUT/digits/lines_grid_nfe1.png" ;;
  *) echo "unknown part $part (use: 8gaussians digits)" >&2; exit 2 ;;
  esac
done
