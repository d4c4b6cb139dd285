"""The plain-text table of an ``eval`` or ``score`` report: quality per NFE with its spread, floors, notes,
the teacher's line and the per-class block (``docs/evaluation.md``)."""

from __future__ import annotations

from .scoring import FLOOR_FROM_REFERENCE, FLOW_LOSS_FROM_PAIRS, TEACHER_SOURCE


def _spread_key(values: dict, key: str, suffix: str = "") -> str | None:
    """The key of ``key``'s spread in ``values``: its sd over noise seeds, else (KID) its sd over subsets."""
    for spread in (f"{key}_sd{suffix}", f"{key}_subset_sd{suffix}"):
        if isinstance(values.get(spread), float):
            return spread
    return None


def _value_text(values: dict, key: str, suffix: str = "") -> str:
    """``values[key + suffix]`` to 4 digits, with `` ± spread`` where it has one (:func:`_spread_key`)."""
    value = values[key + suffix]
    if not isinstance(value, float):
        return str(value)
    spread = _spread_key(values, key, suffix)
    return f"{value:.4g}" + (f" ± {values[spread]:.2g}" if spread else "")


def _is_spread(key: str) -> bool:
    return key.endswith(("_sd", "_seeds"))


def _row_head(row: dict) -> str:
    """The first two cells of a result row: solver and NFE (``eval``), or which set was scored (``score``)."""
    return f"{row['solver']:>7} {row['nfe']:>5}" if "nfe" in row else f"{row.get('set', 'samples'):>13}"


def _quality_keys(row: dict) -> list[str]:
    return [k for k in row
            if k not in ("nfe", "nfe_requested", "solver", "sample_seconds", "per_class", "features", "set")
            and not _is_note(k) and not _is_spread(k)]


def _teacher_text(report: dict, keys: list[str]) -> str | None:
    """The line of a pair-trained student's ``teacher`` block: its pairs' x* scored like the student's rows."""
    block = report.get("teacher")
    if not isinstance(block, dict):
        return None
    size = f", n={block['n']}" if block.get("n") != report.get("n") else ""
    guided = f", guidance {block['guidance']:g}" if isinstance(block.get("guidance"), float) else ""
    values = ", ".join(f"{k} {_value_text(block, k)}" for k in keys if k in block)
    return (f"teacher ({block.get('samples', TEACHER_SOURCE)}, {block['solver']} NFE "
            f"{block['nfe']}{guided}{size}): {values}")


def format_table(report: dict) -> str:
    """A plain-text quality-vs-NFE table (and, for a conditional run, one per class); a ``score`` report's
    one row alike. A value's `` ± x`` is its sd over the noise seeds (``--seeds``), or for kid on one
    seed its sd over subsets. A pair-trained student's teacher is a line below its rows."""
    results = report["results"]
    keys = _quality_keys(results[0])
    on_pairs = " (on held-out teacher pairs)" if report.get("flow_loss_source") == FLOW_LOSS_FROM_PAIRS else ""
    seeds = report.get("seeds") or [0]
    about = [f"n={report['n']}"]
    if report.get("n_reference", report["n"]) != report["n"]:
        about[0] += f" vs {report['n_reference']} reference"
    if report.get("features"):
        about.append(f"{report['features']} features")
    if isinstance(report.get("clamped"), bool):
        about.append("samples clamped to [-1, 1]" if report["clamped"] else "samples unclamped (--raw)")
    if len(seeds) > 1:
        about.append(f"mean ± sd over seeds {seeds[0]}-{seeds[-1]}")
    if isinstance(report.get("guidance"), float):  # every sampled number below, extras included, is at this weight
        about.append(f"guidance {report['guidance']:g}")
    if report.get("noise"):
        about.append(f"noise from {report['noise']}")
    if "method" in report:
        lines = [f"{report['method']} on {report['data']} (step {report['step']}, {', '.join(about)}): curvature "
                 f"{report['curvature']:.4g}, held-out flow loss {report['flow_loss_heldout']:.4g}{on_pairs}"]
    else:  # straightflow score
        teacher = report.get("teacher")
        made = (f" ({teacher['samples']} of a {teacher['kind']} teacher, {teacher['solver']} NFE {teacher['nfe']})"
                if isinstance(teacher, dict) else "")
        lines = [f"score of {report['samples']}{made} against {report['data']} ({', '.join(about)})"]
    floors = [k for k, v in report.items() if k.endswith("_floor") and isinstance(v, float) and not _is_spread(k[:-6])]
    if floors:
        source = f" ({report['floor_source']})" if report.get("floor_source") == FLOOR_FROM_REFERENCE else ""
        size = f", n={report['n_floor']}" if "n_floor" in report and report["n_floor"] != report["n"] else ""
        lines.append(f"two-sample floor{source}{size}: "
                     + ", ".join(f"{k[:-6]} {_value_text(report, k[:-6], '_floor')}" for k in floors))
    notes = row_notes(results)
    cells = [[_value_text(r, k) for k in keys] for r in results]
    widths = [max([10, len(k)] + [len(row[i]) for row in cells]) for i, k in enumerate(keys)]
    lines.append((f"{'solver':>7} {'NFE':>5} " if "nfe" in results[0] else f"{'':>13} ")
                 + " ".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
    for r, row in zip(results, cells):
        marks = " ".join(notes[v] for v in notes_of(r))
        lines.append(f"{_row_head(r)} " + " ".join(f"{c:>{w}}" for c, w in zip(row, widths))
                     + (f"  {marks}" if marks else ""))
    lines.extend(f"{mark} {note}" for note, mark in notes.items())
    teacher_line = _teacher_text(report, keys) if "method" in report else None
    if teacher_line:
        lines.append(teacher_line)
    if "per_class" in results[0]:
        lines.extend(_class_table(report))
    # scalar keys added by the method's evaluate_extra (e.g. kl, recon_w2)
    shown = {"curvature", "flow_loss_heldout", "guidance", "kid_scale"}
    extra = {k: v for k, v in report.items() if isinstance(v, float) and k not in shown and not k.endswith("_floor")}
    if extra:
        lines.append("method extras: " + ", ".join(f"{k} {v:.4g}" for k, v in extra.items()))
    lines.extend(f"note: {v}" for k, v in report.items() if k.endswith("_note") and isinstance(v, str))
    return "\n".join(lines)


def _is_note(key: str) -> bool:
    return key == "note" or key.endswith("_note")


def notes_of(row: dict) -> list[str]:
    """A result row's caveats: ``note`` (the solver's) and ``*_note`` (a metric's), in order."""
    return [v for k, v in row.items() if _is_note(k) and isinstance(v, str) and v]


def row_notes(rows: list[dict]) -> dict[str, str]:
    """The distinct notes of result rows, each with the marker ("*", "**", ...) its rows carry in a table."""
    notes: dict[str, str] = {}
    for r in rows:
        for note in notes_of(r):
            if note not in notes:
                notes[note] = "*" * (len(notes) + 1)
    return notes


def _class_table(report: dict) -> list[str]:
    """Per-class rows: the quality metric and class accuracy at each NFE (or of the scored set), beside the class's
    floor."""
    metric = report["quality_metric"]
    acc = next(k for k in report["results"][0] if k.endswith("_accuracy"))
    floors = {row["class"]: row.get(metric) for row in report["per_class_floor"]}
    head = " ".join(f"{metric + ('@' + str(r['nfe']) if 'nfe' in r else ''):>10} {'acc':>6}" for r in report["results"])
    evals = [f"NFE {r['nfe']} -> {r['network_evals']}" for r in report["results"] if "network_evals" in r]
    about = [f"guidance {report['guidance']:g}"] if isinstance(report.get("guidance"), float) else []
    about.append(acc.replace("_", " "))
    if evals:
        about.append("network evaluations per sample: " + ", ".join(evals))
    lines = [f"per class ({'; '.join(about)})", f"{'class':>12} {'floor':>10} " + head]
    for i, name in enumerate(report["classes"]):
        cells = []
        for r in report["results"]:
            row = r["per_class"][i]
            value = row.get(metric)
            cells.append(f"{value:>10.4g} {row[acc]:>6.3f}" if value is not None else f"{'-':>10} {row[acc]:>6.3f}")
        floor = floors.get(name)
        lines.append(f"{name[:12]:>12} {floor if floor is None else format(floor, '.4g'):>10} " + " ".join(cells))
    return lines
