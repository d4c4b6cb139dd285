"""``--beta auto``: pick the KL target of the curvature method from pilot runs (``docs/kl_target.md``).

The price of a low beta in the curvature method (curvature paper, Eq. 11) is that the aggregate
q_phi(z) drifts from the prior p(z), so samples from z ~ p(z) degrade at many NFE; how much KL a
dataset tolerates differs from set to set. The rule measures that price instead of guessing it:

1. **Pilots.** Runs of the same configuration (same data, network, batch, seed; so the
   same batches and noise: paired comparisons) and the same length (``steps``: the price
   depends on the training length, so a shorter pilot mismeasures it), trained and judged on a
   validation split carved from the training data (``--validation-fraction``, default
   :data:`VALIDATION_FRACTION`, by ``--split-seed``: the pilots train on the rest and score against
   it, so no point that chooses K is among the held-out points ``eval`` reports on), at the fixed betas of
   :data:`PILOT_BETAS` = inf (the baseline, the independent coupling), 30, 10, 3, 1, 0.3, walked
   from the baseline down. Each pilot reports its quality at NFE 1 and at :data:`PRICE_NFE`
   (the training monitor's probe on the EMA weights: W2 for vectors, FD for images, Euler,
   :data:`PROBE_N` seeded noises, the mean over ``--beta-auto-draws`` draws of noise and
   reference: by default :data:`VECTOR_DRAWS` for vectors, :data:`IMAGE_DRAWS` for images) and its
   KL per dimension ``KL(beta)`` (the mean training-batch KL of its last tenth, the quantity the
   ``--kl-target`` controller steers).
2. **Price.** ``r(beta) = q_100(beta) / q_100(inf)``, the many-NFE quality relative to the
   baseline pilot (its standard error ``se`` from the paired draws, draw d of every pilot on the
   same noise and reference, is reported). A pilot is admissible when ``r <= price``
   (``--beta-auto-price``, default :data:`DEFAULT_PRICE` = 1.5: half as much many-NFE error
   again as the baseline). The walk stops at the first inadmissible pilot (lower betas only move
   q_phi(z) further from the prior).
3. **Target.** Of the admissible pilots with a finite beta, the edge pilot is the one with the
   best quality at NFE 1 (ties: the larger KL). K is not placed on it but moved toward the next
   safer pilot (the one before it on the walk), geometrically in KL and beta, by the fraction
   ``t`` at which the NFE 1 quality interpolated between the two is ``1 +`` :data:`HEDGE` times the
   edge's (``t = 1``, the safer pilot itself, when it is already that close; toward the
   baseline, linearly in KL and at most half way). This answers the winner's curse: the lowest
   beta whose *measured* price passes tends to be one measured low, and a price that sits at the
   line is a coin toss on fresh draws; the hedge buys price margin where the few-step quality is
   cheapest to give up. When already beta = 30 is inadmissible, K is interpolated linearly in KL
   from the baseline point (KL 0, r 1) to beta = 30's, where that line crosses ``price``.
   The run starts at the interpolated beta, near the controller's fixed point.

A pilot priced within :data:`NEAR_LINE_SE` standard errors of ``price`` is *near the line*: the draws it was priced
on do not settle which side it is on, and the run says so (a log note and ``near_line`` in the record) instead of
presenting a coin toss as a measurement; more draws narrow it as ``1 / sqrt(draws)``.

The pilots cost up to six runs (fewer when the walk stops early): ``--beta auto`` is an
automated sweep; where that is too dear, take K from one and pass ``--kl-target``. The run then
trains with ``kl_target = K`` (its ``config.yaml`` records K and the initial beta, so it is an
ordinary ``--kl-target`` run; ``--resume`` alone, or the same command with ``--resume``, continues
it, and a run stopped during its pilots starts again from the finished ones); the pilots stay in
``RUNDIR/pilots/beta-<b>/`` and the decision in ``RUNDIR/beta_auto.json``. Rerunning the same
command reuses finished pilots. One process only: under torchrun pass the K a one-process
pilot found as ``--kl-target``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
from pathlib import Path

from ..config import resolve_config
from ..data import DataOptions, load_data
from ..errors import StraightflowError
from ..formatting import beta_label
from .monitor import QUALITY_FILE, read_records

#: the fixed betas of the pilots, walked from the baseline (inf) down
PILOT_BETAS = (math.inf, 30.0, 10.0, 3.0, 1.0, 0.3)
#: the default largest admissible many-NFE quality relative to the baseline pilot (``--beta-auto-price``)
DEFAULT_PRICE = 1.5
#: Euler steps of the many-NFE quality (the price)
PRICE_NFE = 100
#: seeded noises of the pilots' quality probe (capped by the held-out set)
PROBE_N = 2000
#: the default number of independent draws of noise and reference that a pilot's quality averages
#: (``--beta-auto-draws 0``): on vectors (W2, under a second a draw at n = 2000) 20, since one draw of
#: W2 varies by up to 2x and 5-draw prices of the same weights spread over 1.36x-1.56x
#: (docs/kl_target.md); on images (FD, each draw costs PROBE_N x (1 + PRICE_NFE) network passes) 5
VECTOR_DRAWS, IMAGE_DRAWS = 20, 5
#: the share of the edge pilot's NFE 1 quality the run gives up to move K toward the next safer pilot
#: (step 3): half of a 15% tolerance on NFE 1 quality, fixed before it was measured (docs/kl_target.md)
HEDGE = 0.075
#: a pilot whose price is within this many standard errors of ``--beta-auto-price`` is *near the line*: fresh
#: draws could put it on the other side, so the decision that rests on it is flagged (log and ``near_line``)
NEAR_LINE_SE = 2.0
#: the record written beside the run
RECORD_FILE = "beta_auto.json"
#: the share of the training data the pilots carve out as their validation split unless the run sets
#: ``--validation-fraction`` itself
VALIDATION_FRACTION = 0.2

#: fields a pilot sets itself; every other field is the run's own
_PILOT_FIELDS = {"out", "steps", "beta", "kl_target", "eval_every", "eval_nfe", "eval_n", "eval_draws", "progress",
                 "log_every", "ckpt_every", "keep_checkpoints", "tensorboard", "validation_fraction"}


def default_draws(shape: tuple[int, ...]) -> int:
    """The pilots' draws for samples of ``shape`` when ``--beta-auto-draws`` is 0: :data:`VECTOR_DRAWS` for
    vectors, :data:`IMAGE_DRAWS` otherwise."""
    return VECTOR_DRAWS if len(shape) == 1 else IMAGE_DRAWS


def _few_step(p: dict) -> float:
    q = p.get("quality_nfe1")
    return float(q) if q is not None and math.isfinite(q) else math.inf


def price_of(pilot: dict, baseline: dict) -> tuple[float, float]:
    """``(r, se)``: the pilot's quality at NFE 100 over the baseline pilot's, and the standard error
    of r from the paired draws (draw d of both on the same noise and reference; 0 without draws)."""
    base = baseline["quality"]
    ratio = pilot["quality"] / base if math.isfinite(pilot["quality"]) else math.inf
    a, b = pilot.get("quality_draws") or [], baseline.get("quality_draws") or []
    if (not math.isfinite(ratio) or len(a) < 2 or len(a) != len(b)
            or any(v is None or w is None or not w > 0 for v, w in zip(a, b))):
        return ratio, 0.0
    return ratio, statistics.stdev(v / w for v, w in zip(a, b)) / math.sqrt(len(a))


def choose_target(pilots: list[dict], price: float = DEFAULT_PRICE, hedge: float = HEDGE) -> dict:
    """The rule's steps 2 and 3 on measured pilots (``[{"beta", "kl", "quality", "quality_nfe1",
    "quality_draws"}, ...]``: the baseline (beta inf) first, then descending betas, possibly stopped
    early; ``quality`` at NFE 100, ``quality_draws`` its per-draw values): ``{"kl_target", "beta",
    "hedge_fraction", "why"}`` (see the module docstring)."""
    if not pilots or not math.isinf(pilots[0]["beta"]):
        raise StraightflowError("the auto-beta rule needs the baseline pilot (beta inf) first")
    base = pilots[0]["quality"]
    if not (math.isfinite(base) and base > 0):
        raise StraightflowError(f"--beta auto: the baseline pilot's quality is {base}; cannot measure a price")
    walked = [{**pilots[0], "ratio": 1.0, "se": 0.0}]
    for p in pilots[1:]:
        ratio, se = price_of(p, pilots[0])
        if not (p["kl"] > 0):
            raise StraightflowError(f"--beta auto: the beta={beta_label(p['beta'])} pilot reached KL {p['kl']}; cannot "
                                    "place a target")
        if ratio > price:
            if len(walked) > 1:
                break
            frac = (price - 1.0) / (ratio - 1.0) if math.isfinite(ratio) else 0.0  # from (KL 0, r 1) to this pilot
            if not frac > 0:
                raise StraightflowError(f"--beta auto: already beta={beta_label(p['beta'])} costs {ratio:.3g}x (+- "
                                        f"{se:.2g}) the baseline at NFE {PRICE_NFE}, and --beta-auto-price {price:g} "
                                        "leaves no KL to spend: train the baseline (--beta inf) or allow a "
                                        "larger price")
            return {"kl_target": frac * p["kl"], "beta": p["beta"], "hedge_fraction": 0.0,
                    "why": f"beta={beta_label(p['beta'])} already costs {ratio:.3g}x (+- {se:.2g}) the baseline at NFE "
                           f"{PRICE_NFE}: K where the line from the baseline crosses {price:g}x"}
        walked.append({**p, "ratio": ratio, "se": se})
    if len(walked) < 2:
        raise StraightflowError("the auto-beta rule needs at least one pilot with a finite beta")
    i = min(range(1, len(walked)), key=lambda j: (_few_step(walked[j]), -walked[j]["kl"]))
    edge, safer = walked[i], walked[i - 1]
    t = _hedge_fraction(edge, safer, hedge)
    if safer["kl"] > 0:  # geometric in KL and beta between two pilots
        kl = edge["kl"] ** (1 - t) * safer["kl"] ** t
        beta = edge["beta"] ** (1 - t) * safer["beta"] ** t
    else:  # toward the baseline (KL 0, beta inf): linear in KL, at most half way
        kl, beta = (1 - t) * edge["kl"], edge["beta"] / (1 - t)
    why = (f"beta={beta_label(edge['beta'])}: the best NFE 1 quality ({_few_step(edge):.4g}) of the pilots whose "
           f"price at NFE {PRICE_NFE} is within {price:g}x of the baseline (it costs {edge['ratio']:.3g}x +- "
           f"{edge['se']:.2g})")
    if t > 0:
        q1 = (1 - t) * _few_step(edge) + t * _few_step(safer)
        r = (1 - t) * edge["ratio"] + t * safer["ratio"]
        why += (f"; K moved {t:.0%} of the way to beta={beta_label(safer['beta'])} ({safer['ratio']:.3g}x), giving up "
                f"{q1 / _few_step(edge) - 1:.1%} of that NFE 1 quality for an expected {r:.3g}x")
    return {"kl_target": kl, "beta": beta, "hedge_fraction": t, "why": why}


def _hedge_fraction(edge: dict, safer: dict, hedge: float) -> float:
    """How far (0-1) from ``edge`` toward ``safer`` K moves so that the interpolated NFE 1 quality is ``1 + hedge``
    times the edge's (0 without NFE 1 qualities; at most 1/2 toward the baseline, which has no KL to aim at)."""
    q_edge, q_safer = _few_step(edge), _few_step(safer)
    if not (hedge > 0 and math.isfinite(q_edge) and math.isfinite(q_safer)):
        return 0.0
    t = 1.0 if q_safer <= q_edge * (1 + hedge) else hedge * q_edge / (q_safer - q_edge)
    return min(t, 0.5) if safer["kl"] <= 0 else t


def near_line(pilots: list[dict], price: float, k: float = NEAR_LINE_SE) -> list[dict]:
    """The priced pilots (``ratio``, ``se``; the baseline excluded) within ``k`` standard errors of ``price``: their
    side of the line is not settled by the draws they were priced on, so neither is a decision that rests on them (a
    price with no standard error counts as settled)."""
    return [p for p in pilots[1:]
            if p.get("se", 0.0) > 0 and math.isfinite(p["ratio"]) and abs(p["ratio"] - price) <= k * p["se"]]


def validation_fraction(cfg) -> float:
    """The share of the training data the pilots of ``cfg`` are judged on: the run's own
    ``validation_fraction`` when set, else :data:`VALIDATION_FRACTION`."""
    return float(cfg.validation_fraction) or VALIDATION_FRACTION


def pilot_config(cfg, beta: float, draws: int, *, custom_model: bool = False, custom_data: bool = False,
                 custom_encoder: bool = False) -> dict:
    """The config fields of the pilot of ``cfg`` at ``beta``: the run's own, with the pilot's length, beta,
    quality probe (:data:`PROBE_N` samples, NFE 1 and :data:`PRICE_NFE`, ``draws`` draws) and validation
    split; ``custom_*``: the fields ``train()`` records itself for a user's own module or Dataset."""
    base = {k: v for k, v in cfg.to_dict().items() if k not in _PILOT_FIELDS}
    for key, custom in (("model", custom_model), ("data", custom_data), ("encoder", custom_encoder)):
        if custom:
            base.pop(key, None)
    steps = int(cfg.steps)
    return dict(base, out=str(Path(cfg.out) / "pilots" / f"beta-{beta_label(beta)}"), steps=steps, beta=beta,
                kl_target=None, eval_every=steps, eval_nfe=f"1,{PRICE_NFE}", eval_n=PROBE_N, eval_draws=draws,
                progress=False, log_every=max(1, steps // 20), ckpt_every=steps, keep_checkpoints=1, tensorboard=False,
                validation_fraction=validation_fraction(cfg))


def _pilot_draws(cfg, dataset=None, shape: tuple[int, ...] | None = None) -> int:
    """The draws each pilot's quality averages (``shape``: the data's, when the caller has loaded it); the
    one-process rule of the pilots is checked first."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise StraightflowError("--beta auto runs its pilots in one process: run it once without torchrun (or take "
                                "K from a one-process pilot's beta_auto.json) and pass --kl-target K under torchrun")
    if int(cfg.beta_auto_draws):
        return int(cfg.beta_auto_draws)
    if shape is None:
        shape = load_data(cfg.data, DataOptions.of(cfg), dataset=dataset).shape
    return default_draws(tuple(shape))


def pilot_plan(cfg, shape: tuple[int, ...], *, custom_model: bool = False, custom_data: bool = False,
               custom_encoder: bool = False) -> list[str]:
    """What :func:`resolve_auto_beta` would do for ``cfg``, checked but not run (``train(dry_run=True)``): the
    pilots' draws and split, and per pilot whether it is reused, resumed or trained; each pilot's config is
    validated, and a finished pilot priced another way is the error the real run gives. ``shape``: the data's."""
    draws = _pilot_draws(cfg, shape=tuple(shape))
    steps = int(cfg.steps)
    lines = [f"--beta auto: up to {len(PILOT_BETAS)} pilots of {steps} steps in {Path(cfg.out) / 'pilots'}, each "
             f"priced on {draws} draws at NFE 1 and {PRICE_NFE} against a {validation_fraction(cfg):g} "
             f"validation split (price {float(cfg.beta_auto_price):g}x the baseline; docs/kl_target.md)"]
    for beta in PILOT_BETAS:
        kw = pilot_config(cfg, beta, draws, custom_model=custom_model, custom_data=custom_data,
                          custom_encoder=custom_encoder)
        resolve_config(None, {k: v for k, v in kw.items() if k in cfg.to_dict()})
        run_dir = Path(kw["out"])
        done = read_records(run_dir / QUALITY_FILE)
        if done and done[-1]["step"] == steps:
            _check_finished_pilot(run_dir, done[-1], draws)
            what = "finished: reused"
        else:
            what = "resumes" if (run_dir / "config.yaml").exists() else "trains"
        lines.append(f"  pilot beta={beta_label(beta)}: {what}")
    return lines


def late_kl(stats: list[dict], steps: int) -> float:
    """A run's KL per dimension as the pilots report it: the mean training-batch KL of its last tenth (0 without
    any)."""
    last = [r["kl"] for r in stats if r["step"] > steps - max(1, steps // 10) and "kl" in r]
    return sum(last) / len(last) if last else 0.0


def _pilot_result(run_dir: Path, steps: int) -> dict:
    quality = read_records(run_dir / QUALITY_FILE)
    stats = read_records(run_dir / "stats.jsonl")
    if not quality or quality[-1]["step"] != steps or not stats:
        raise StraightflowError(f"--beta auto: the pilot {run_dir} left no quality check at step {steps}")
    q = quality[-1]
    key = next((k for k in (f"w2_nfe{PRICE_NFE}", f"fd_nfe{PRICE_NFE}") if k in q), None)
    if key is None:
        raise StraightflowError(f"--beta auto: the pilot {run_dir} recorded no quality at NFE {PRICE_NFE}")
    value = q[key]
    return {"quality": math.inf if value is None else float(value), "quality_key": key, "kl": late_kl(stats, steps),
            "quality_nfe1": q.get(key.replace(f"nfe{PRICE_NFE}", "nfe1")), "quality_draws": q.get(f"{key}_draws")}


def _check_finished_pilot(run_dir: Path, last: dict, draws: int) -> None:
    """Refuse to reuse a finished pilot priced another way than this run would price it: on another number of
    draws, or against the held-out split (pilots made before they were judged on a validation split)."""
    if last.get("draws", 1) != draws or not any(k.endswith(f"_nfe{PRICE_NFE}_draws") for k in last):
        had = last.get("draws", 1)
        raise StraightflowError(f"--beta auto: the pilot {run_dir} was priced on {had} draws, not the {draws} of "
                                f"--beta-auto-draws (or by an older straightflow): delete that folder to rerun it"
                                + (f", or pass --beta-auto-draws {had}" if had >= 2 else ""))
    if last.get("split") != "validation":
        raise StraightflowError(f"--beta auto: the pilot {run_dir} was priced on the held-out split that eval "
                                "reports on, not on a validation split: delete that folder to rerun it")


def resolve_auto_beta(cfg, train_fn, *, velocity_net=None, encoder_net=None, dataset=None, log=print) -> dict:
    """Run the pilots of ``cfg`` (``beta == "auto"``) with ``train_fn`` (``training.train``), set
    ``cfg.kl_target`` and ``cfg.beta`` (the initial beta) by :func:`choose_target`, write
    ``RUNDIR/beta_auto.json`` and return that record."""
    draws = _pilot_draws(cfg, dataset)
    out = Path(cfg.out)
    steps = int(cfg.steps)
    price = float(cfg.beta_auto_price)
    pilots: list[dict] = []
    for beta in PILOT_BETAS:
        kw = pilot_config(cfg, beta, draws, custom_model=velocity_net is not None, custom_data=dataset is not None,
                          custom_encoder=encoder_net is not None)
        run_dir = Path(kw["out"])
        done = read_records(run_dir / QUALITY_FILE)
        if done and done[-1]["step"] == steps:
            _check_finished_pilot(run_dir, done[-1], draws)
        if not (done and done[-1]["step"] == steps):
            resume = (run_dir / "config.yaml").exists()
            train_fn(resume=resume, velocity_net=copy.deepcopy(velocity_net), encoder_net=copy.deepcopy(encoder_net),
                     dataset=dataset, **({"out": str(run_dir), "steps": steps} if resume else kw))
        result = {"beta": beta, **_pilot_result(run_dir, steps)}
        result["ratio"], result["se"] = price_of(result, pilots[0]) if pilots else (1.0, 0.0)
        pilots.append(result)
        log(f"straightflow: --beta auto pilot beta={beta_label(beta)}: {result['quality_key']} {result['quality']:.4g} "
            f"({result['ratio']:.3g}x +- {result['se']:.2g} the baseline), KL {result['kl']:.4g} per dim")
        if result["ratio"] > price:
            break
    choice = choose_target(pilots, price)
    cfg.kl_target, cfg.beta = float(choice["kl_target"]), float(choice["beta"])
    close = near_line(pilots, price)
    if close:
        named = ", ".join(f"beta={beta_label(p['beta'])} ({p['ratio']:.3g}x +- {p['se']:.2g})" for p in close)
        log(f"straightflow: --beta auto: note: {named} {'is' if len(close) == 1 else 'are'} priced within "
            f"{NEAR_LINE_SE:g} standard errors of {price:g}x, so fresh draws could put "
            f"{'it' if len(close) == 1 else 'them'} on the other side of the line; the standard error falls as 1 / "
            f"sqrt(--beta-auto-draws), now {draws} (docs/kl_target.md)")
    pilots = [{**p, "beta": beta_label(p["beta"])} for p in pilots]  # strict JSON: no inf
    fraction = validation_fraction(cfg)
    record = {"draws": draws, "priced_on": {
                  "split": "validation", "validation_fraction": fraction, "split_seed": int(cfg.split_seed),
                  "what": f"{fraction:g} of the training data carved out by split_seed {int(cfg.split_seed)} "
                          "(generated data: draws of a validation stream of its own); the pilots train on the rest, "
                          "and none of it is in the held-out split eval reports on"},
              "rule": f"the best NFE 1 quality among pilots whose NFE {PRICE_NFE} price is within {price:g}x of the "
                      f"baseline pilot, K moved toward the next safer pilot to give up {HEDGE:.1%} of it "
                      "(docs/kl_target.md)",
              "price": price, "hedge": HEDGE, "pilot_steps": steps, "pilots": pilots,
              "near_line": [beta_label(p["beta"]) for p in close], **choice}
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD_FILE).write_text(json.dumps(record, indent=1))
    log(f"straightflow: --beta auto: kl_target {cfg.kl_target:.4g} per dim, initial beta {cfg.beta:.4g} "
        f"({choice['why']})")
    return record
