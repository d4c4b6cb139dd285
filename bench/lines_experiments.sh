#!/usr/bin/env bash
# Experiments of the lines method, teacher pairs, reflow and one-step distillation.
#
#   bash bench/lines_experiments.sh                 # everything (about 2 hours on 2 CPU cores)
#   PARTS="2d ot-dim" bash bench/lines_experiments.sh
#   STEPS=20 NPAIRS=2000 TEACHER_NFE=4 DIGITS_TEACHER_NFE=4 DIGITS_STEPS=20 DIGITS_PAIRS=500 EVAL_N=200 \
#       OUT=/tmp/lines-smoke bash bench/lines_experiments.sh   # smoke test of every command
#
# Parts (PARTS, space-separated):
#   2d       moons 8gaussians checkerboard spirals: baseline teacher (eval at NFE 1 2 4 100),
#            pairs from it, then reflow (2-rectified flow), distill, lines (plain,
#            --sampler-steps 2, --adv), and OT-CFM (--method ot), all with the teacher's
#            steps and batch; quality at NFE 1 2 4.  (--sampler-steps 1 trains at t = 1 only,
#            i.e. the distill objective, so `distill` stands for it.)
#   digits   the same on `digits` (Fréchet distance), without OT-CFM.
#   table1   curvature paper Table 1 on TABLE1_SETS (moons digits): baseline vs --beta 10 teacher,
#            quality per NFE, distillation error and one-step quality of each teacher's student.
#   ot-dim   how much minibatch OT lowers the pairing cost vs dimension (2..64) at batch 256.
# Every run directory gets eval.json; bench/lines_table.py prints the tables at the end.
set -euo pipefail

OUT=${OUT:-runs/lines}
PARTS=${PARTS:-"2d digits table1 ot-dim"}
SETS=${SETS:-"moons 8gaussians checkerboard spirals"}
STEPS=${STEPS:-3000}            # 2D: steps of the teacher and of every student (same budget)
BATCH=${BATCH:-256}
NPAIRS=${NPAIRS:-100000}        # 2D pairs per teacher
TEACHER_NFE=${TEACHER_NFE:-100} # Euler steps of the teacher solve that makes the pairs
ADV=${ADV:-0.1}                 # weight of the adversarial term of `lines_adv`
DIGITS_STEPS=${DIGITS_STEPS:-3000}  # the documented digits baseline's budget (bench/images_experiment.sh)
DIGITS_BATCH=${DIGITS_BATCH:-128}
DIGITS_PAIRS=${DIGITS_PAIRS:-20000}
DIGITS_TEACHER_NFE=${DIGITS_TEACHER_NFE:-16}  # Euler 16 is as good as 100 for the digits teacher (FD 5.8 at 8 vs 7.0 at 100)
TABLE1_SETS=${TABLE1_SETS:-"moons digits"}
EVAL_N=${EVAL_N:-2000}
STUDENTS=${STUDENTS:-"reflow distill lines lines_k2 lines_adv"}  # which students to train (two shells can split them)
SF=${SF:-straightflow}
HERE=$(cd "$(dirname "$0")" && pwd)
# the lines students of these tables: all t, lr 1e-3, MSE (the recipe before the vector default became
# --sampler-steps 2 --t1-fraction 0.9 --lr 0.003 --recon pseudo-huber, docs/student_gap.md); later flags win
PLAIN="--sampler-steps 0 --t1-fraction none --lr 0.001 --recon mse"
Q="--progress false"

# train NAME ARGS... : train into $OUT/NAME unless it already holds a finished run
train() {
  local dir=$OUT/$1; shift
  if [ -f "$dir/config.yaml" ]; then echo "skip $dir (exists)"; return; fi
  echo "+ $SF train $* --out $dir"
  $SF train "$@" --out "$dir" $Q > /dev/null
}
# evaluate NAME NFES [ARGS...] : eval.json (the method's default solver: euler, or lines for lines runs)
evaluate() {
  local dir=$OUT/$1 nfes=$2; shift 2
  echo "+ $SF eval $dir --nfe $nfes"
  $SF eval "$dir" --nfe "$nfes" -n "$EVAL_N" --json "$@" > "$dir/eval.json"
}
pairs() {  # pairs TEACHER_NAME PAIRS_NAME N [NFE]
  local teacher=$OUT/$1 out=$OUT/$2 n=$3 nfe=${4:-$TEACHER_NFE}
  echo "+ $SF pairs $teacher -n $n --solver euler --nfe $nfe --out $out"
  $SF pairs "$teacher" -n "$n" --solver euler --nfe "$nfe" --out "$out" --quiet
}
# students NAME_PREFIX PAIRS_NAME STEPS BATCH : reflow, distill, lines (plain, k = 2, adversarial)
students() {
  local p=$1 pairs_dir=$OUT/$2 steps=$3 batch=$4
  local s
  for s in $STUDENTS; do
    case $s in
    reflow) train "$p/reflow" --method reflow --init-from-teacher true --pairs "$pairs_dir" --steps "$steps" --batch-size "$batch" ;;
    distill) train "$p/distill" --method distill --pairs "$pairs_dir" --steps "$steps" --batch-size "$batch" ;;
    lines) train "$p/lines" --method lines $PLAIN --pairs "$pairs_dir" --steps "$steps" --batch-size "$batch" ;;
    lines_k2) train "$p/lines_k2" --method lines $PLAIN --sampler-steps 2 --pairs "$pairs_dir" --steps "$steps" --batch-size "$batch" ;;
    lines_adv) train "$p/lines_adv" --method lines $PLAIN --adv "$ADV" --pairs "$pairs_dir" --steps "$steps" --batch-size "$batch" ;;
    *) echo "unknown student $s (use: reflow distill lines lines_k2 lines_adv)" >&2; exit 2 ;;
    esac
    evaluate "$p/$s" 1,2,4
  done
}

mkdir -p "$OUT"
for part in $PARTS; do
  case $part in
  2d)
    for d in $SETS; do
      train "$d/teacher" --data "$d" --method rectified --steps "$STEPS" --batch-size "$BATCH"
      evaluate "$d/teacher" "1,2,4,$TEACHER_NFE"
      train "$d/ot" --data "$d" --method ot --steps "$STEPS" --batch-size "$BATCH"
      evaluate "$d/ot" 1,2,4
      pairs "$d/teacher" "$d/pairs" "$NPAIRS"
      students "$d" "$d/pairs" "$STEPS" "$BATCH"
    done ;;
  digits)
    train digits/teacher --data digits --method rectified --steps "$DIGITS_STEPS" --batch-size "$DIGITS_BATCH"
    evaluate digits/teacher "1,2,4,$TEACHER_NFE"
    pairs digits/teacher digits/pairs "$DIGITS_PAIRS" "$DIGITS_TEACHER_NFE"
    students digits digits/pairs "$DIGITS_STEPS" "$DIGITS_BATCH" ;;
  table1)
    # baseline teachers come from the 2d/digits parts (trained here if missing); beta = 10 teachers here
    for d in $TABLE1_SETS; do
      if [ "$d" = digits ]; then steps=$DIGITS_STEPS batch=$DIGITS_BATCH n=$DIGITS_PAIRS nfe=$DIGITS_TEACHER_NFE
      else steps=$STEPS batch=$BATCH n=$NPAIRS nfe=$TEACHER_NFE; fi
      train "$d/teacher" --data "$d" --method rectified --steps "$steps" --batch-size "$batch"
      train "$d/teacher_beta10" --data "$d" --method curvature --beta 10 --steps "$steps" --batch-size "$batch"
      for t in teacher teacher_beta10; do evaluate "$d/$t" "1,2,3,4,6,8,12,16,24,32,48,64,$TEACHER_NFE"; done
      pairs "$d/teacher" "$d/pairs" "$n" "$nfe"                # reuses the 2d/digits part's pairs when complete
      pairs "$d/teacher_beta10" "$d/pairs_beta10" "$n" "$nfe"
      train "$d/distill" --method distill --pairs "$OUT/$d/pairs" --steps "$steps" --batch-size "$batch"
      train "$d/distill_beta10" --method distill --pairs "$OUT/$d/pairs_beta10" --steps "$steps" --batch-size "$batch"
      evaluate "$d/distill" 1,2,4
      evaluate "$d/distill_beta10" 1,2,4
    done ;;
  ot-dim)
    echo "+ python bench/ot_dimension.py"
    python "$HERE/ot_dimension.py" | tee "$OUT/ot_dimension.txt" ;;
  *) echo "unknown part $part (use: 2d digits table1 ot-dim)" >&2; exit 2 ;;
  esac
done
python "$HERE/lines_table.py" "$OUT"
