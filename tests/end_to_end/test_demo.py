"""``straightflow demo`` at a small but real budget: every output is written, the table holds the three
methods at NFE 1, 2, 4, 100, and the story holds (the lines student far ahead of the baseline at NFE 1)."""

import json

from straightflow.experiments.demo import NFES, TABLE_NFES, run_demo


def test_the_demo_tells_the_story(tmp_path, capsys):
    out = tmp_path / "demo_out"
    reports = run_demo(out, steps=300, student_steps=100, n_pairs=3000, n=500, progress=False)
    printed = capsys.readouterr().out
    for i in range(1, 7):
        assert f"straightflow demo [{i}/6] " in printed
    for name in ("story.png", "story.md", "trajectories.png", "quality_vs_nfe.txt", "report.json"):
        assert (out / name).stat().st_size > 0 and str(out / name) in printed, name
    assert (out / "story.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = (out / "story.md").read_text()
    assert table.strip() in printed
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["method", "sampler", *(f"NFE {k}" for k in TABLE_NFES)]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| method")}
    assert list(rows) == ["baseline (rectified flow)", "curvature method (beta = 10)", "lines student of the baseline",
                          "two-sample floor"]
    assert all(len(line.strip("|").split("|")) == 2 + len(TABLE_NFES) for line in rows.values())

    saved = json.loads((out / "report.json").read_text())
    assert saved["data"] == "moons" and list(saved["runs"]) == ["baseline", "curvature", "lines"]
    assert all([r["nfe"] for r in rep["results"]] == list(NFES) for rep in saved["runs"].values())
    assert (out / "quality_vs_nfe.txt").read_text().count("two-sample floor") == 3

    w2_at_1 = {name: rep["results"][0]["w2"] for name, rep in reports.items()}
    assert w2_at_1["lines"] < 0.5 * w2_at_1["baseline"], w2_at_1  # printed 0.42 vs 1.67 at this budget
    assert w2_at_1["curvature"] < w2_at_1["baseline"], w2_at_1  # 1.28 vs 1.67
    assert reports["lines"]["results"][0]["solver"] == "lines"
