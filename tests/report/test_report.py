"""``straightflow report``: jobs, resume, failures, the Markdown and HTML pages, and images in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import escape as html_escape
from pathlib import Path

import pytest

import straightflow
from straightflow.cli.main import build_parser, main
from straightflow.errors import StraightflowError
from straightflow.report import SCALES, SECTIONS, Job, SectionSpec, run_report
from straightflow.report.builder import PAGE_FIGURES, PAGE_MARKER, collect_jobs
from straightflow.report.document import Figure, Heading, Table, Text
from straightflow.report.jobs import bench_dir, check_graph, exec_argv, unavailable_reason

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ a tiny section table of real jobs
def _png_job(path: str, color: str, after: tuple = ()) -> Job:
    code = f"from PIL import Image; Image.new('RGB', (48, 32), {color!r}).save({path!r})"
    return Job(path, ("python", "-c", code), outputs=(path,), after=after)


def _count_job(job_id: str, counter: str, stdout: str, after: tuple = ()) -> Job:
    """Appends a line to ``counter`` (outside the outputs) every time it runs, prints a JSON object."""
    code = f"import json; open({counter!r}, 'a').write('x\\n'); print(json.dumps({{'value': 1.5, 'id': {job_id!r}}}))"
    return Job(job_id, ("python", "-c", code), stdout=stdout, after=after)


def _tiny_table(counter: Path, fail: bool = False) -> list[SectionSpec]:
    c = str(counter)

    def jobs_a(scale):
        return [_png_job("figures/a.png", "red"), _count_job("runs/a", c, "runs/a.json", after=("figures/a.png",))]

    def render_a(ctx, scale):
        value = ctx.json("runs/a.json")["value"]
        return ([Heading("a table"), Table(["name", "value"], [["a", f"{value:g}"]])]
                + ctx.figure("figures/a.png", "a red square"))

    def jobs_b(scale):
        jobs = [_png_job("runs/b/plot.png", "blue"), _count_job("runs/b", c, "runs/b.json")]
        if fail:
            jobs.append(Job("runs/broken",
                            ("python", "-c", "import sys; print('boom: no such thing', file=sys.stderr); sys.exit(3)")))
            jobs.append(_count_job("runs/after-broken", c, "runs/after.json", after=("runs/broken",)))
        return jobs

    def render_b(ctx, scale):
        rows = [[rel, f"{r['value']:g}"] for rel in ("runs/b.json", "runs/after.json")
                if (r := ctx.maybe_json(rel)) is not None]
        blocks = [Text(f"b is {ctx.json('runs/b.json')['value']}"), Table(["file", "value"], rows)]
        return (blocks + ctx.figure("runs/b/plot.png", "a blue square, copied", name="b.png")
                + ctx.part(lambda: [Text(ctx.text("runs/after.json"))], "after"))

    return [SectionSpec("alpha", "1. Alpha", "The first section.", jobs_a, render_a),
            SectionSpec("beta", "2. Beta", "The second one, with a figure made elsewhere.", jobs_b, render_b),
            SectionSpec("gamma", "3. Gamma", "Skipped at this scale.", lambda s: [], lambda c, s: [], lambda s: False,
                        "Not at this scale.")]


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


# ------------------------------------------------------------------ browser check
def browser_image_counts(html: Path, tmp: Path) -> tuple[int, int]:
    """(images, broken images) of ``html`` once loaded in headless chromium (Debian's package)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    probe = tmp / "probe.html"
    script = ("<script>window.addEventListener('load', function () { var imgs = document.images, broken = 0;"
              "for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken++; }"
              "document.body.setAttribute('data-images', imgs.length); document.body.setAttribute('data-broken', "
              "broken); });</script>")
    probe.write_text(html.read_text().replace("</body>", script + "</body>"))
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=10000",
           "--dump-dom", probe.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    images, broken = re.search(r'data-images="(\d+)"', dom), re.search(r'data-broken="(\d+)"', dom)
    assert images and broken, f"the load handler did not run; chromium printed: {dom[:300]!r}"
    return int(images.group(1)), int(broken.group(1))


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_report_html_shows_every_image_in_a_headless_browser(tmp_path):
    out = tmp_path / "report"
    res = run_report(out, "smoke", table=_tiny_table(tmp_path / "count"), n_jobs=2, progress=False)
    html = res.html.read_text()
    images, broken = browser_image_counts(res.html, tmp_path)
    assert (images, broken) == (2, 0)
    assert "src=\"figures/" not in html and html.count('src="data:image/png;base64,') == 2  # self-contained
    for spec in _tiny_table(tmp_path / "count")[:2]:  # every command is on the page, verbatim (HTML-escaped)
        for job in spec.jobs(SCALES["smoke"]):
            assert html_escape(job.command) in html
    # a page whose figure went missing shows a broken image in the browser, so the check can fail
    bad = tmp_path / "bad.html"
    bad.write_text(html.replace('src="data:image/png;base64,', 'src="figures/gone.png#', 1))
    assert browser_image_counts(bad, tmp_path) == (2, 1)


def image_links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)


def test_markdown_twin_links_its_figures_and_the_page_copy(tmp_path):
    out = tmp_path / "report"
    page = tmp_path / "docs" / "experiments.md"
    stale = page.parent / PAGE_FIGURES / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"png")
    res = run_report(out, "smoke", table=_tiny_table(tmp_path / "count"), progress=False, page=page,
                     command="straightflow report --smoke")
    md = res.markdown.read_text()
    links = image_links(md)
    assert sorted(links) == ["figures/a.png", "figures/b.png"] and all((out / p).is_file() for p in links)
    assert "| a | 1.5 |" in md and "b is 1.5" in md and "**Not at this scale.**" in md
    assert ("## Machine, versions and seeds" in md and "torch" in md
            and "Generated by `straightflow report --smoke`" in md)
    text = page.read_text()
    assert res.page == page and text.splitlines()[0] == PAGE_MARKER and "edit the generator" in text
    assert re.search(r"Generated by `straightflow report --smoke` on \d{4}-\d\d-\d\d, straightflow commit \S+", text)
    page_links = image_links(text)  # relative to the page, into its own figure folder, and every one resolves
    assert sorted(page_links) == [f"{PAGE_FIGURES}/a.png", f"{PAGE_FIGURES}/b.png"]
    assert all(not Path(p).is_absolute() and (page.parent / p).is_file() for p in page_links)
    assert (page.parent / page_links[0]).read_bytes() == (out / "figures" / Path(page_links[0]).name).read_bytes()
    assert not stale.exists()  # a figure the page no longer links is removed from its folder
    assert text.replace(f"{PAGE_FIGURES}/", "figures/").endswith(md)  # below its header, the report's Markdown


def test_a_bad_page_is_refused_before_any_job_runs(tmp_path):
    counter = tmp_path / "count"
    (tmp_path / "a_file").write_text("")
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "docs" / "figures" / "report").write_text("")
    for page, message in ((tmp_path, "is a folder"), (tmp_path / "p.html", "ending in .md"),
                          (tmp_path / "a_file" / "p.md", "is a file"),
                          (tmp_path / "docs" / "p.md", "its figures go to")):
        with pytest.raises(StraightflowError, match=message) as err:
            run_report(tmp_path / "r", "smoke", table=_tiny_table(counter), progress=False, page=page)
        assert "\n" not in str(err.value) and str(err.value).startswith(f"report --page {page}: ")
    assert _runs(counter) == 0 and not (tmp_path / "r").exists()


def test_the_committed_experiments_page_is_report_output():
    """docs/experiments.md is written by `straightflow report --page` (make experiments-page), not by hand."""
    page = REPO / "docs" / "experiments.md"
    text = page.read_text()
    assert text.splitlines()[0] == PAGE_MARKER, ("docs/experiments.md is not report output: regenerate it with make "
                                                 "experiments-page")
    assert re.search(r"^> Generated by `straightflow report --\w+ .*--page docs/experiments.md` on \d{4}-\d\d-\d\d, "
                     r"straightflow commit ", text, re.M)
    links = image_links(text)
    assert all(p.startswith(f"{PAGE_FIGURES}/") and (page.parent / p).is_file() for p in links), [
        p for p in links if not (page.parent / p).is_file()]
    on_disk = {p.relative_to(page.parent).as_posix() for p in (page.parent / PAGE_FIGURES).rglob("*.png")}
    assert on_disk == set(links), "docs/figures/report/ holds figures the page does not link"


def test_a_second_run_reuses_finished_jobs_and_redoes_only_what_is_missing(tmp_path):
    counter, out = tmp_path / "count", tmp_path / "report"
    first = run_report(out, "smoke", table=_tiny_table(counter), n_jobs=2, progress=False)
    assert len(first.jobs.executed) == 4 and _runs(counter) == 2
    second = run_report(out, "smoke", table=_tiny_table(counter), n_jobs=2, progress=False)
    assert second.jobs.executed == [] and _runs(counter) == 2
    assert {r.status for r in second.jobs.results.values()} == {"skipped"}
    # an interrupted job left no record: only it runs again; a deleted output: only its job runs again
    (out / ".jobs" / "runs__b.json").unlink()
    (out / "figures" / "a.png").unlink()
    third = run_report(out, "smoke", table=_tiny_table(counter), progress=False)
    assert sorted(third.jobs.executed) == ["figures/a.png", "runs/b"] and _runs(counter) == 3
    log = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert (len(log) == 12 and {e["status"] for e in log} == {"ran", "skipped"}
            and all("command" in e and "wall_s" in e for e in log))
    # another scale in the same folder is refused
    with pytest.raises(StraightflowError, match="holds a --smoke report"):
        run_report(out, "quick", table=_tiny_table(counter), progress=False)


def test_a_failing_job_is_one_line_naming_its_command_and_log(tmp_path):
    counter, out = tmp_path / "count", tmp_path / "report"
    with pytest.raises(StraightflowError) as err:
        run_report(out, "smoke", table=_tiny_table(counter, fail=True), n_jobs=2, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "`python -c 'import sys; print(" in message and "exit 3: boom: no such thing" in message
    assert str(out / "logs" / "runs__broken.log") in message
    assert "boom: no such thing" in (out / "logs" / "runs__broken.log").read_text()
    md = (out / "report.md").read_text()  # the report is still written, with what finished
    assert "FAILED (exit 3)" in md and "`runs/after-broken` blocked (runs/broken failed)" in md and "| a | 1.5 |" in md
    # the section with the failed job keeps what finished: its table's existing row, its figure, and a note for the rest
    assert "| runs/b.json | 1.5 |" in md and "runs/after.json |" not in md and "![b](figures/b.png)" in md
    assert "**Not available (after):** `runs/after.json` is missing" in md
    assert not (out / "runs" / "after.json").exists() and _runs(counter) == 2  # the dependent never ran; the others did


def test_unknown_sections_and_scales_are_one_line_errors(tmp_path, capsys):
    assert main(["report", "--smoke", "--out", str(tmp_path / "r"), "--sections", "lines,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("straightflow: error: report --sections: unknown section 'nope'; use: baseline, ")
    assert "\n" not in err and not (tmp_path / "r" / "runs").exists()
    assert main(["report", "--quick", "--full", "--out", str(tmp_path / "r")]) == 2
    with pytest.raises(StraightflowError, match="unknown scale 'huge'"):
        run_report(tmp_path / "r", "huge")


# ------------------------------------------------------------------ the real section table
@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_section_command_parses_and_the_job_graph_is_ordered(scale):
    jobs, per_section = collect_jobs(SECTIONS, SCALES[scale])
    check_graph(jobs)
    assert len({j.id for j in jobs}) == len(jobs)
    parser = build_parser()
    for job in jobs:
        if job.argv[0] == "straightflow":
            args = parser.parse_args(list(job.argv[1:]))  # a misspelt flag raises here
            if args.command == "train":
                assert job.resume_dir == args.out and "--resume" not in job.argv
        else:
            assert job.argv[0] == "python" and (REPO / job.argv[1]).is_file(), job.command
        for dep in job.after:  # a job reads only what jobs before it wrote
            assert dep in {j.id for j in jobs}
    if not SCALES[scale].digits:
        assert not any("digits" in j.command for j in jobs)
        assert per_section["digits-baseline"] == [] and per_section["digits-lines"] == []


def test_sections_share_jobs_by_id_and_run_them_once():
    scale = SCALES["quick"]
    jobs, per_section = collect_jobs(SECTIONS, scale)
    teacher = "runs/2d/moons/teacher"
    users = [name for name, js in per_section.items() if any(j.id == teacher for j in js)]
    assert set(users) == {"baseline", "lines", "table1", "curvature-lines"}
    assert [j.id for j in jobs].count(teacher) == 1
    # the curvature -> lines section: pairs of the beta = 10 teacher at a quarter of the baseline pairs' NFE
    pairs = next(j for j in jobs if j.id == f"runs/2d/moons/pairs_beta10_nfe{scale.teacher_nfe // 4}")
    assert (pairs.argv[pairs.argv.index("--nfe") + 1] == str(scale.teacher_nfe // 4)
            and "runs/2d/moons/teacher_beta10" in pairs.argv)


def test_train_jobs_resume_an_interrupted_run(tmp_path):
    job = Job("runs/x", ("straightflow", "train", "--data", "moons", "--out", "runs/x"), resume_dir="runs/x")
    assert exec_argv(job, tmp_path)[-1] != "--resume"
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "config.yaml").write_text("data: moons\n")
    assert (exec_argv(job, tmp_path)[1:4] == ["-m", "straightflow", "train"]
            and exec_argv(job, tmp_path)[-1] == "--resume")
    bench = Job("b", ("python", "bench/ot_dimension.py", "--json"))
    assert exec_argv(bench, tmp_path, REPO / "bench")[1] == str(REPO / "bench" / "ot_dimension.py")


def test_bench_scripts_come_from_the_current_directory_or_bench(tmp_path, monkeypatch):
    """The bench/ scripts are not package data: `bench/` under the current directory (a clone's root) or --bench DIR."""
    job = Job("b", ("python", "bench/ot_dimension.py", "--json"))
    monkeypatch.chdir(REPO)
    assert bench_dir() == REPO / "bench" and bench_dir(REPO / "bench") == REPO / "bench"
    monkeypatch.chdir(tmp_path)  # not a clone: the bench jobs are unavailable, with what to do about it
    assert bench_dir() is None and bench_dir(REPO / "bench") == REPO / "bench"
    assert ("--bench DIR" in unavailable_reason(job, bench_dir())
            and unavailable_reason(job, bench_dir(REPO / "bench")) == "")
    with pytest.raises(StraightflowError, match="no bench/ folder"):
        exec_argv(job, tmp_path, None)
    with pytest.raises(StraightflowError, match=r"^report --bench .*: no bench_baseline.py there"):
        run_report(tmp_path / "r", "smoke", table=_tiny_table(tmp_path / "count"), progress=False, bench=tmp_path)
    assert not (tmp_path / "r").exists()


def test_the_commit_comes_from_git_where_the_package_is_imported_from():
    from straightflow.report.builder import _git_commit

    commit = _git_commit()
    if (shutil.which("git") and (REPO / ".git").exists()
            and (REPO / "src" / "straightflow" / "__init__.py").resolve() == Path(straightflow.__file__).resolve()):
        assert re.fullmatch(r"[0-9a-f]{7,}( \+ local changes)?", commit), commit
    else:
        assert commit in ("not a git checkout", "unknown") or re.fullmatch(r"[0-9a-f]{7,}( \+ local changes)?", commit)


def test_a_real_section_end_to_end(tmp_path):
    """The OT-vs-dimension section at smoke scale: the real script, its table in both pages."""
    if bench_dir() is None:
        pytest.skip("needs the repository's bench/ folder")
    res = run_report(tmp_path / "r", "smoke", sections="ot-dimension", progress=False)
    md = res.markdown.read_text()
    assert ("python bench/ot_dimension.py --dims 2,4 --batch 32 --big 64 --batches 1 --json > "
            "runs/ot_dimension.json" in md)
    rows = json.loads((tmp_path / "r" / "runs" / "ot_dimension.json").read_text())
    assert [(r["data"], r["dim"]) for r in rows] == [("mixture", 2), ("mixture", 4), ("gaussian", 2), ("gaussian", 4)]
    assert f"| gaussian | 2 | {rows[2]['indep']:.3f} |" in md and "<table>" in res.html.read_text()


def test_docs_page_describes_every_section():
    page = (REPO / "docs" / "report.md").read_text()
    for spec in SECTIONS:
        assert f"`{spec.name}`" in page, spec.name


def test_figure_blocks_render_in_both_formats(tmp_path):
    from straightflow.report.document import Document, Section, to_html, to_markdown

    (tmp_path / "figures").mkdir()
    shutil.copyfile(REPO / "docs" / "figures" / next(p.name for p in (REPO / "docs" / "figures").glob("*.png")),
                    tmp_path / "figures" / "f.png")
    doc = Document("T", [Text("- one `a|b`\n- two **bold** [link](https://example.org)")],
                   [Section("s", "1. S & T", [Figure("figures/f.png", "cap"), Table(["x|y", "z"], [["1", "2"]])])])
    md, html = to_markdown(doc), to_html(doc, tmp_path)
    assert "![f](figures/f.png)\n\n*cap*" in md and "| x\\|y | z |" in md and "## 1. S & T" in md
    assert ("<li>one <code>a|b</code></li>" in html and "<strong>bold</strong>" in html
            and '<a href="https://example.org">link</a>' in html)
    assert 'id="1-s--t"' in html and "data:image/png;base64," in html


def test_results_are_read_from_captured_stdout_even_with_other_lines(tmp_path):
    from straightflow.report.sections import Context, Missing

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "eval.json").write_text('straightflow: training the digits-classifier-v1 feature network '
                                                 '(once)\n{"a": 1}\n')
    (tmp_path / "runs" / "bad.json").write_text("no json here\n")
    ctx = Context(tmp_path, SCALES["smoke"], {})
    assert ctx.json("runs/eval.json") == {"a": 1}
    with pytest.raises(Missing, match="bad.json"):
        ctx.json("runs/bad.json")
    with pytest.raises(Missing, match="gone.json"):
        ctx.json("runs/gone.json")
    assert ctx.figure("runs/none.png", "x") == []


# ------------------------------------------------------------------ partial output and the section 9 verdict
def _eval_json(path: Path, q: dict[int, float], sd: float | None = None, **extra) -> None:
    rows = [{"nfe": k, "nfe_requested": k, "solver": "euler", "w2": v, **({"w2_sd": sd} if sd is not None else {})}
            for k, v in q.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quality_metric": "w2", "w2_floor": 0.1, "results": rows, "curvature": 0.5, **extra}))


def _md(blocks) -> str:
    from straightflow.report.document import _md_block

    return "\n\n".join(_md_block(b) for b in blocks)


def test_section_9_renders_the_rows_that_exist_and_states_its_verdict(tmp_path):
    from straightflow.report.sections import Context
    from straightflow.report.sections.curvature_lines import render_curvature_lines

    scale = SCALES["smoke"]
    root, q = tmp_path / "runs" / "2d" / "moons", scale.quarter_nfe
    _eval_json(root / "teacher" / "eval.json", {1: 2.0, scale.teacher_nfe: 0.2})
    _eval_json(root / "lines" / "eval.json", {1: 0.3, 2: 0.28, 4: 0.25}, distill_error=0.01)
    _eval_json(root / "lines" / "eval_seeds.json", {1: 0.3}, sd=0.01)
    md = _md(render_curvature_lines(Context(tmp_path, scale, {}), scale))  # the beta = 10 side never ran
    assert "| baseline (`rectified`) | 8 | 0.2 |" in md and "beta = 10 (`curvature`) |" not in md
    assert f"`runs/2d/moons/lines_beta10_nfe{q}/eval.json`" in md and "No verdict" in md
    _eval_json(root / "teacher_beta10" / "eval_pairs.json", {q: 0.3, scale.teacher_nfe: 0.25})
    _eval_json(root / f"lines_beta10_nfe{q}" / "eval.json", {1: 0.32, 2: 0.3, 4: 0.27})
    _eval_json(root / f"lines_beta10_nfe{q}" / "eval_seeds.json", {1: 0.32}, sd=0.01)
    md = _md(render_curvature_lines(Context(tmp_path, scale, {}), scale))
    assert "Not available" not in md and "| beta = 10 (`curvature`) | 2 | 0.3 |" in md
    assert (f"trained on the beta = 10 teacher's pairs at Euler {q} scores W2 0.32 ± 0.01 at NFE 1 against 0.3 ± 0.01 "
            f"for the baseline teacher's pairs at Euler {scale.teacher_nfe} (ratio 1.07; difference +0.02, tolerance "
            "0.03): **the cheaper pairs do not cost quality**") in md


def test_the_pairs_verdict_rule():
    from straightflow.formatting import three_significant_digits
    from straightflow.report.sections.curvature_lines import pairs_verdict

    assert pairs_verdict((1.0, 0.0), (1.09, 0.0)) == ("do not cost quality", 0.1)
    assert pairs_verdict((1.0, 0.0), (1.11, 0.0))[0] == "cost quality"
    # within twice the combined seed sd (0.283)
    assert pairs_verdict((1.0, 0.1), (1.2, 0.1))[0] == "do not cost quality"
    assert pairs_verdict((1.0, 0.0), (0.8, 0.0))[0] == "do not cost quality (their student is better)"
    assert ([three_significant_digits(v) for v in (0.041666, 3.5249, 41.66, 417.6, 1234.4, None)]
            == ["0.0417", "3.52", "41.7", "418", "1234", "-"])


def test_students_table_keeps_the_runs_that_finished(tmp_path):
    from straightflow.report.sections import Context
    from straightflow.report.sections.lines import lines_check, students_table

    root = tmp_path / "runs" / "2d" / "moons"
    _eval_json(root / "lines" / "eval.json", {1: 0.3, 2: 0.28, 4: 0.25})
    blocks, runs = students_table(Context(tmp_path, SCALES["smoke"], {}), "moons", ("teacher", "lines"))
    md = _md(blocks)
    assert ("| lines | euler | 0.3 | 0.28 | 0.25 |" in md and "`runs/2d/moons/teacher/eval.json`" in md
            and list(runs) == ["lines"])
    assert "not checked" in lines_check("moons", runs, 0.1)
