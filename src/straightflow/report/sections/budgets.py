"""The budgets of ``straightflow report``: :class:`Scale` and the three scales of :data:`SCALES`.

``full`` is the budget of the full-scale record, docs/experiments-full.md (3000 steps per
model, four 2D sets, 100,000 pairs, digits); ``quick`` cuts it, aimed at under 20 minutes on
2 cores (1000 steps, two 2D sets, 20,000 pairs, no digits); ``smoke`` is a tiny network on a
few steps, to check that every command runs (its numbers mean nothing). docs/report.md lists
what each section runs at each scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import StraightflowError

#: the four 2D sets of the full-scale record (docs/experiments-full.md)
FOUR_2D_SETS = ("moons", "8gaussians", "checkerboard", "spirals")


@dataclass(frozen=True)
class Scale:
    """The budgets of one report scale (every field is shown in the report's header)."""

    name: str
    steps: int = 3000  # 2D: training steps of every model
    batch: int = 256  # 2D batch size
    eval_samples: int = 2000  # 2D: samples per evaluation (W2 against as many held-out points)
    network_flags: tuple[str, ...] = ()  # extra network flags of every 2D model (smoke: a tiny MLP)
    sweep_sets: tuple[str, ...] = FOUR_2D_SETS
    betas: str = "0.3,1,3,10,30,inf"
    sweep_nfe: str = "1,2,4,8,100"
    lines_sets: tuple[str, ...] = FOUR_2D_SETS
    pairs: int = 100_000  # 2D teacher pairs
    teacher_nfe: int = 100  # Euler steps of the teacher solve that makes the pairs
    adv_weight: float = 0.1  # weight of lines_adv's adversarial term (`--adv`)
    table1_nfe: str = "1,2,3,4,6,8,12,16,24,32,48,64,100"
    table1_sets: tuple[str, ...] = ("moons", "digits")
    curvature_lines_sets: tuple[str, ...] = FOUR_2D_SETS
    ot_dimension_args: tuple[str, ...] = ()  # extra flags of bench/ot_dimension.py
    peer_images_steps: int = 100  # bench_baseline.py's digits row (0: skipped)
    conditional_steps: int = 3000  # training steps of the conditional 8gaussians model
    any_teacher_pairs: int = 100_000
    digits: bool = True  # the digits (8x8 images) parts
    digits_steps: int = 3000
    digits_batch: int = 128
    digits_network_flags: tuple[str, ...] = ()
    digits_pairs: int = 20_000
    digits_teacher_nfe: int = 16
    digits_betas: str = "1,3,10,inf"
    digits_eval_samples: int = 2000
    spread_seeds: int = 6  # sampling seeds of the digits seed spreads
    verdict_seeds: int = 5  # sampling seeds behind section 9's verdict (mean and sd of each student's quality at NFE 1)

    @property
    def teacher_eval_nfe(self) -> str:
        """The NFEs a 2D teacher is evaluated at: 1, 2, 4, 8 and its pairs' NFE."""
        return ",".join(str(k) for k in sorted({1, 2, 4, 8, self.teacher_nfe}))

    @property
    def quarter_nfe(self) -> int:
        """A quarter of the pairs' NFE: the Euler NFE of the beta = 10 teacher's cheaper pairs (section 9)."""
        return max(1, self.teacher_nfe // 4)

    def settings(self) -> list[tuple[str, str]]:
        """(budget, value) rows for the report's header."""
        rows = [("2D training steps / batch (every model)", f"{self.steps} / {self.batch}"),
                ("2D network", "MLP width 256, depth 3" if not self.network_flags else " ".join(self.network_flags)),
                ("2D evaluation samples (W2 vs as many held-out points)", str(self.eval_samples)),
                ("curvature sweeps: sets / betas", f"{', '.join(self.sweep_sets)} / {self.betas}"),
                ("lines section: sets / teacher pairs / pairs' Euler NFE",
                 f"{', '.join(self.lines_sets)} / {self.pairs:,} / {self.teacher_nfe}"),
                ("Table 1 sets", ", ".join(s for s in self.table1_sets if self.digits or s != "digits")),
                ("curvature teacher -> lines: sets / beta = 10 pairs' NFE",
                 f"{', '.join(self.curvature_lines_sets)} / {self.quarter_nfe}"),
                ("section 9's verdict: sampling seeds per student", str(self.verdict_seeds)),
                ("conditional 8gaussians steps", str(self.conditional_steps))]
        if self.digits:
            rows += [("digits: steps / batch", f"{self.digits_steps} / {self.digits_batch}"),
                     ("digits: pairs / pairs' Euler NFE / betas",
                      f"{self.digits_pairs:,} / {self.digits_teacher_nfe} / {self.digits_betas}")]
        else:
            rows.append(("digits (8x8 images)", "skipped at this scale"))
        return rows


SCALES: dict[str, Scale] = {
    "full": Scale("full"),
    "quick": Scale("quick", steps=1000, eval_samples=1000, sweep_sets=("moons", "spirals"), betas="0.3,1,10,inf",
                   lines_sets=("moons", "spirals"), pairs=20_000, table1_sets=("moons",),
                   curvature_lines_sets=("moons",), ot_dimension_args=("--batches", "4"), peer_images_steps=0,
                   conditional_steps=1000, any_teacher_pairs=20_000, digits=False),
    "smoke": Scale("smoke", steps=30, batch=64, eval_samples=200, network_flags=("--width", "32", "--depth", "2"),
                   sweep_sets=("moons",), betas="1,10,inf", sweep_nfe="1,4", lines_sets=("moons",), pairs=1000,
                   teacher_nfe=8, table1_nfe="1,2,4,8", curvature_lines_sets=("moons",),
                   ot_dimension_args=("--dims", "2,4", "--batch", "32", "--big", "64", "--batches", "1"),
                   peer_images_steps=2, conditional_steps=30, any_teacher_pairs=1000, digits_steps=3, digits_batch=16,
                   digits_network_flags=("--channels", "8"), digits_pairs=200, digits_teacher_nfe=2,
                   digits_betas="10,inf", digits_eval_samples=100, spread_seeds=2, verdict_seeds=2),
}

#: what a digits section shows at a scale without digits (:attr:`Scale.digits` False)
DIGITS_SKIP_NOTE = ("Skipped at this scale: the digits UNet trains at about 3000 steps in 10 minutes per model on "
                    "one core. `straightflow report --full` runs it.")


def runs_digits(scale: Scale) -> bool:
    """Whether the digits (8x8 images) sections run at ``scale``."""
    return scale.digits


def check_scale(name: str) -> Scale:
    """The scale called ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in SCALES:
        raise StraightflowError(f"report: unknown scale {name!r}; use: {', '.join(SCALES)}")
    return SCALES[name]
