"""Tables of bench/lines_experiments.sh from the eval.json files under a results folder.

    python bench/lines_table.py runs/lines

Per data set: quality (W2, or the Fréchet distance for images) at NFE 1, 2, 4
for the teacher and every student, the teacher at its largest NFE, each
run's NFE-1 quality as a multiple of that, distillation error, curvature and
prediction drift. Then the curvature paper's Table 1 where both teachers exist,
and the OT-vs-dimension table when it was run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["teacher", "ot", "reflow", "distill", "lines", "lines_k2", "lines_adv"]


def quality(report: dict) -> dict[int, float]:
    key = report.get("quality_metric", "w2")
    return {r["nfe_requested"]: r[key] for r in report["results"] if isinstance(r.get(key), (int, float))}


def load(folder: Path) -> dict[str, dict[str, dict]]:
    found: dict[str, dict[str, dict]] = {}
    for f in sorted(folder.glob("*/*/eval.json")):
        try:
            found.setdefault(f.parent.parent.name, {})[f.parent.name] = json.loads(f.read_text())
        except json.JSONDecodeError:
            print(f"(skipping unreadable {f})")
    return found


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "-"


def method_table(data: str, runs: dict[str, dict]) -> None:
    teacher = runs.get("teacher")
    tq = quality(teacher) if teacher else {}
    top = max(tq) if tq else None
    metric = (teacher or next(iter(runs.values()))).get("quality_metric", "w2")
    print(f"\n### {data} ({metric}; two-sample floor {_fmt((teacher or {}).get(metric + '_floor'))})\n")
    head = (["run", "solver", "NFE 1", "NFE 2", "NFE 4"] + ([f"teacher NFE {top}", "NFE 1 / teacher"] if top else [])
            + ["distill err", "curvature", "pred. drift"])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name in ([n for n in ORDER if n in runs]
                 + sorted(n for n in runs if n not in ORDER and not n.startswith(("teacher_", "distill_")))):
        r = runs[name]
        q = quality(r)
        solver = r["results"][0]["solver"] if r.get("results") else "-"
        row = [name, solver] + [_fmt(q.get(k)) for k in (1, 2, 4)]
        if top:
            row += [_fmt(tq[top]) if name == "teacher" else "", _fmt(q[1] / tq[top]) if 1 in q and tq[top] else "-"]
        row += [_fmt(r.get("distill_error")), _fmt(r.get("curvature")), _fmt(r.get("prediction_drift"))]
        print("| " + " | ".join(row) + " |")


def table1(data: str, runs: dict[str, dict]) -> None:
    if not {"teacher", "teacher_beta10"} <= set(runs):
        return
    base = quality(runs["teacher"])
    target = 1.1 * base[max(base)]
    print(f"\n### Table 1 on {data}: NFE to reach 1.1 x the baseline's quality at NFE {max(base)} ({_fmt(target)})\n")
    print("| teacher | NFE to reach | quality per NFE | distill err | student NFE 1 |\n|---|---|---|---|---|")
    for t, student in (("teacher", "distill"), ("teacher_beta10", "distill_beta10")):
        q = quality(runs[t])
        reach = min((k for k, v in q.items() if v <= target), default=None)
        s = runs.get(student, {})
        sq = quality(s) if s else {}
        per = ", ".join(f"{k}:{v:.3g}" for k, v in sorted(q.items()))
        print(f"| {t} | {reach or '>' + str(max(q))} | {per} | {_fmt(s.get('distill_error'))} | {_fmt(sq.get(1))} |")


def main(folder: str) -> None:
    root = Path(folder)
    for data, runs in load(root).items():
        method_table(data, runs)
        table1(data, runs)
    ot = root / "ot_dimension.txt"
    if ot.exists():
        print("\n### Minibatch OT vs dimension\n\n```\n" + ot.read_text().rstrip() + "\n```")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/lines")
