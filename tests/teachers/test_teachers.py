"""Teachers from any callable (:mod:`straightflow.teachers`) and ``straightflow pairs --teacher-callable``."""

import json
import textwrap

import numpy as np
import pytest
import torch

from straightflow.cli.main import main
from straightflow.data.pairs import PairData
from straightflow.errors import StraightflowError
from straightflow.noise import seeded_noise
from straightflow.run import Run
from straightflow.solvers import solve
from straightflow.teachers import SamplerTeacher, VelocityTeacher, from_peer_velocity, generate_pairs, load_callable

TEACHER_FILE = textwrap.dedent(
    """
    import torch

    CALLS = []

    def velocity(x, t):
        CALLS.append(tuple(t.shape))
        return torch.ones_like(x) * 0.5

    def sampler(z):
        return 2 * z + 1

    not_callable = 3
    """
)


def _z(n, shape=(2,), seed=0, stream="pairs"):
    return seeded_noise(n, shape, seed, stream)


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("solver,nfe", [("euler", 1), ("euler", 4), ("euler", 7), ("heun", 3), ("heun", 4)])
def test_velocity_teacher_constant_field(solver, nfe):
    c = torch.tensor([0.5, -1.25])
    teacher = VelocityTeacher(lambda x, t: c.expand_as(x), solver, nfe)
    z = _z(64)
    res = teacher(z)
    assert res.nfe == nfe
    assert teacher.settings() == {"solver": solver, "nfe": nfe}
    # dz/dt = c from t = 1 to 0: x* = z - c, whatever the solver and its steps
    torch.testing.assert_close(res.samples, z - c, rtol=0, atol=1e-6)


def test_rk45_teacher_pairs_end_at_t0():
    # x* of a velocity teacher is the state at t = 0, not at RK45's t_end = 1e-3. Constant field:
    # x* = z - c exactly (the old x* was z - 0.999 c); linear field dz/dt = z: x* = z exp(-1).
    c = torch.tensor([0.5, -1.25], dtype=torch.float64)
    z = _z(64).double()
    res = VelocityTeacher(lambda x, t: c.expand_as(x), "rk45", 1)(z)
    torch.testing.assert_close(res.samples, z - c, rtol=0, atol=1e-9)
    calls = []
    teacher = VelocityTeacher(lambda x, t: calls.append(1) or x, "rk45")
    res = teacher(z)
    assert res.nfe == len(calls)  # the final x_hat call is counted
    torch.testing.assert_close(res.samples, z * torch.exp(torch.tensor(-1.0, dtype=torch.float64)), rtol=2e-5,
                               atol=2e-5)
    assert teacher.settings()["rk45_end"].startswith("t = 0")  # old rk45 pair folders are not resumed into


def test_velocity_teacher_rejects_bad_settings():
    with pytest.raises(StraightflowError, match="unknown solver"):
        VelocityTeacher(lambda x, t: x, "midpoint", 4)
    with pytest.raises(StraightflowError, match="nfe"):
        VelocityTeacher(lambda x, t: x, "euler", 0)


def test_from_peer_velocity_is_time_reversed_and_negated():
    def v_peer(x, s):  # an arbitrary, time-dependent peer field
        return torch.sin(3 * x) * s[:, None] + x.flip(1) * (1 - s[:, None]) ** 2

    v = from_peer_velocity(v_peer)
    x = _z(50, seed=1)
    t = torch.rand(50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(v(x, t), -v_peer(x, 1 - t), rtol=0, atol=0)


def test_from_peer_velocity_reproduces_the_peer_endpoint():
    # the peer's straight flow from noise z (t_peer = 0) to a z + b (t_peer = 1):
    # x_s = (1 - s) z + s (a z + b), v_peer(x, s) = (a - 1) z + b with z = (x - s b) / (1 - s + s a)
    a, b = torch.tensor([2.0, 0.5]), torch.tensor([1.0, -3.0])

    def v_peer(x, s):
        s = s[:, None]
        z = (x - s * b) / (1 - s + s * a)
        return (a - 1) * z + b

    z = _z(128, seed=2)
    ours = solve(from_peer_velocity(v_peer), z, "euler", 4).samples  # our t: 1 -> 0
    # the peer's own Euler solve, t_peer: 0 -> 1
    x = z.clone()
    for k in range(4):
        x = x + 0.25 * v_peer(x, torch.full((z.shape[0],), k / 4))
    torch.testing.assert_close(ours, a * z + b, rtol=0, atol=1e-5)  # straight paths: Euler is exact
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)
    # a curved peer field: both integrators take the same steps on the same times
    curved = lambda x, s: torch.tanh(x) * (1 + s[:, None]) - 0.3 * x.flip(1)
    ours = solve(from_peer_velocity(curved), z, "euler", 8).samples
    x = z.clone()
    for k in range(8):
        x = x + 0.125 * curved(x, torch.full((z.shape[0],), k / 8))
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ sampler teachers
def test_sampler_teacher_records_the_sampler_output():
    teacher = SamplerTeacher(lambda z: z**3 - 0.5 * z, nfe=35)
    z = _z(40, shape=(3, 2))
    res = teacher(z)
    assert torch.equal(res.samples, z**3 - 0.5 * z)
    assert res.nfe == 35
    assert teacher.settings() == {"solver": "sampler", "nfe": 35}


@pytest.mark.parametrize("bad", [lambda z: z[:, :1], lambda z: z.reshape(-1), lambda z: z.numpy(), lambda z: None])
def test_sampler_teacher_wrong_output_is_an_error(bad):
    with pytest.raises(StraightflowError, match="must return x\\* of the same shape"):
        SamplerTeacher(bad)(_z(8))


def test_generate_pairs_of_a_sampler(tmp_path):
    out = tmp_path / "p"
    s = generate_pairs(SamplerTeacher(lambda z: 2 * z + 1), 100, out, (2,), seed=5, shard_size=32, heldout=10,
                       batch_size=7, progress=False)
    assert s["generated_shards"] == 4 and s["generated_pairs"] == 100
    pairs = PairData.open(out, base=_moons())
    x, z = pairs.gather(np.arange(100))
    # row i of the "pairs" stream, whatever the batch / shard
    torch.testing.assert_close(z, _z(100, seed=5), rtol=0, atol=0)
    torch.testing.assert_close(x, 2 * z + 1, rtol=0, atol=0)
    assert pairs.n_train == 90 and pairs.heldout_pairs()[0].shape == (10, 2)


def _moons():
    from straightflow.data import load_data

    return load_data("moons")


# ------------------------------------------------------------------ load_callable
def test_load_callable_from_file_and_module(tmp_path, monkeypatch):
    (tmp_path / "teacher_file.py").write_text(TEACHER_FILE)
    fn = load_callable(f"{tmp_path / 'teacher_file.py'}:sampler")
    assert torch.equal(fn(torch.zeros(2, 2)), torch.ones(2, 2))
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_callable("teacher_file:sampler")
    assert torch.equal(fn(torch.ones(1, 2)), torch.full((1, 2), 3.0))


# ------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "my_teacher.py"
    path.write_text(TEACHER_FILE)
    return path


def _pairs_cli(spec, out, *extra, n=300, nfe=4):
    return main(["pairs", "--teacher-callable", spec, "--data", "moons", "-n", str(n), "--nfe", str(nfe),
                 "--out", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def velocity_pairs(teacher_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("vpairs") / "p"
    assert _pairs_cli(f"{teacher_file}:velocity", out, "--shard-size", "128") == 0
    return out


def test_cli_velocity_pairs_closed_form(velocity_pairs, teacher_file):
    pairs = PairData.open(velocity_pairs)
    m = pairs.manifest
    assert m["n"] == 300 and m["solver"] == "euler" and m["nfe"] == 4 and m["nfe_used"] == 4
    assert m["data"] == "moons" and m["teacher_config"]["data"] == "moons" and m["teacher_kind"] == "callable"
    assert m["teacher"] == f"callable {teacher_file}:velocity" and len(m["shards"]) == 3
    assert pairs.heldout == 30 and pairs.n_train == 270  # default held-out: n / 10
    x, z = pairs.gather(np.arange(300))
    torch.testing.assert_close(z, _z(300), rtol=0, atol=0)
    torch.testing.assert_close(x, z - 0.5, rtol=0, atol=1e-6)  # moons: model units are data units
    hx, hz = pairs.heldout_pairs()
    torch.testing.assert_close(hz, z[270:], rtol=0, atol=0)
    torch.testing.assert_close(hx, hz - 0.5, rtol=0, atol=1e-6)


def test_cli_rk45_pairs_end_at_t0(teacher_file, tmp_path):
    # `pairs --solver rk45` stores x* at t = 0 (x* = z - 0.5 for the constant field), not at t = 1e-3 (z - 0.4995)
    out = tmp_path / "p"
    assert _pairs_cli(f"{teacher_file}:velocity", out, "--solver", "rk45", n=40) == 0
    pairs = PairData.open(out)
    assert pairs.manifest["solver"] == "rk45" and pairs.manifest["rk45_end"].startswith("t = 0")
    x, z = pairs.gather(np.arange(40))
    torch.testing.assert_close(x, z - 0.5, rtol=0, atol=1e-6)


def test_cli_sampler_pairs_closed_form(teacher_file, tmp_path):
    out = tmp_path / "p"
    assert _pairs_cli(f"{teacher_file}:sampler", out, "--teacher-kind", "sampler", "--heldout", "50", nfe=7) == 0
    pairs = PairData.open(out)
    assert pairs.manifest["solver"] == "sampler" and pairs.manifest["nfe"] == 7 and pairs.heldout == 50
    x, z = pairs.gather(np.arange(300))
    torch.testing.assert_close(z, _z(300), rtol=0, atol=0)
    torch.testing.assert_close(x, 2 * z + 1, rtol=0, atol=0)
    hx, hz = pairs.heldout_pairs()
    torch.testing.assert_close(hx, 2 * hz + 1, rtol=0, atol=0)


def test_cli_velocity_called_with_batch_times(teacher_file, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(teacher_file.parent))
    import my_teacher  # the module-path form loads the module the test sees

    my_teacher.CALLS.clear()
    assert _pairs_cli("my_teacher:velocity", tmp_path / "p", "--batch-size", "100", n=250, nfe=3) == 0
    assert my_teacher.CALLS == [(100,)] * 3 + [(100,)] * 3 + [(50,)] * 3  # t of shape (B,), nfe calls per batch


def test_cli_resume_reuses_shards_and_regenerates_a_broken_one(velocity_pairs, teacher_file, capsys):
    before = {p.name: p.read_bytes() for p in velocity_pairs.glob("*.npy")}
    capsys.readouterr()
    assert _pairs_cli(f"{teacher_file}:velocity", velocity_pairs, "--shard-size", "128") == 0
    assert "0 shards generated, 3 reused" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in velocity_pairs.glob("*.npy")} == before
    broken = sorted(velocity_pairs.glob("*.npy"))[0]
    broken.write_bytes(b"garbage")
    assert _pairs_cli(f"{teacher_file}:velocity", velocity_pairs, "--shard-size", "128") == 0
    assert "1 shards generated, 2 reused" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in velocity_pairs.glob("*.npy")} == before


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("straightflow: error: ")
    return err[0]


def test_cli_other_settings_into_the_same_out_is_an_error(velocity_pairs, teacher_file, capsys):
    capsys.readouterr()
    assert _pairs_cli(f"{teacher_file}:velocity", velocity_pairs, "--shard-size", "128", nfe=8) == 2
    line = _one_line_error(capsys)
    assert "other settings" in line and "nfe: 4 -> 8" in line
    assert _pairs_cli(f"{teacher_file}:sampler", velocity_pairs, "--shard-size", "128",
                      "--teacher-kind", "sampler") == 2
    assert "other settings" in _one_line_error(capsys)
    assert PairData.open(velocity_pairs).manifest["nfe"] == 4  # the folder is untouched


@pytest.mark.parametrize(
    "argv,message",
    [
        (["pairs", "--teacher-callable", "{file}:velocity", "-n", "10", "--out", "{out}"], "needs --data"),
        (["pairs", "--teacher-callable", "{file}", "--data", "moons", "-n", "10", "--out", "{out}"],
         "use package.module:function"),
        (["pairs", "--teacher-callable", "{dir}/absent.py:velocity", "--data", "moons", "-n", "10", "--out", "{out}"],
         "does not exist"),
        (["pairs", "--teacher-callable", "{file}:not_callable", "--data", "moons", "-n", "10", "--out", "{out}"],
         "no callable 'not_callable'"),
        (["pairs", "--teacher-callable", "{file}:missing", "--data", "moons", "-n", "10", "--out", "{out}"],
         "no callable 'missing'"),
        (["pairs", "--teacher-callable", "no_such_module_xyz:velocity", "--data", "moons", "-n", "10",
          "--out", "{out}"], "could not import"),
        (["pairs", "{dir}", "--teacher-callable", "{file}:velocity", "--data", "moons", "-n", "10", "--out", "{out}"],
         "not both"),
        (["pairs", "--teacher-callable", "{file}:velocity", "--teacher-kind", "score", "--data", "moons", "-n", "10",
          "--out", "{out}"], "--teacher-kind"),
        (["pairs", "--teacher-callable", "{file}:velocity", "--data", "no-such-data", "-n", "10", "--out", "{out}"],
         ""),
        (["pairs", "--teacher-callable", "{file}:velocity", "--data", "moons", "--solver", "midpoint", "-n", "10",
          "--out", "{out}"], "unknown solver"),
    ],
    ids=["no-data", "no-colon", "missing-file", "not-callable", "missing-attr", "missing-module", "run-and-callable",
         "bad-kind", "bad-data", "bad-solver"],
)
def test_cli_bad_input_is_a_one_line_error(argv, message, teacher_file, tmp_path, capsys):
    argv = [a.format(file=teacher_file, dir=tmp_path, out=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    assert message in _one_line_error(capsys)


def test_cli_broken_teacher_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise ValueError('no weights here\\nsecond line')\n")
    assert _pairs_cli(f"{bad}:velocity", tmp_path / "out") == 2
    line = _one_line_error(capsys)
    assert "could not import" in line and "ValueError: no weights here" in line


def test_cli_non_finite_teacher_is_an_error(tmp_path, capsys):
    bad = tmp_path / "nan_teacher.py"
    bad.write_text("import torch\ndef velocity(x, t):\n    return x / 0.0\n")
    assert _pairs_cli(f"{bad}:velocity", tmp_path / "out") == 2
    assert "non-finite" in _one_line_error(capsys)


def test_cli_teacher_raising_at_call_time_is_a_one_line_user_error(tmp_path, capsys):
    bad = tmp_path / "raising_teacher.py"
    bad.write_text("def velocity(x, t):\n    raise ValueError('wrong signature for this model')\n")
    assert _pairs_cli(f"{bad}:velocity", tmp_path / "out") == 2
    assert "raised ValueError: wrong signature" in _one_line_error(capsys)


# ------------------------------------------------------------------ a student from callable pairs
def test_lines_student_trains_from_callable_pairs(velocity_pairs, tmp_path, capsys):
    run_dir = tmp_path / "student"
    argv = ["train", "--method", "lines", "--pairs", str(velocity_pairs), "--steps", "30", "--width", "32", "--depth",
            "2", "--batch-size", "64", "--log-every", "10", "--ckpt-every", "30", "--progress", "false",
            "--out", str(run_dir)]
    assert main(argv) == 0, capsys.readouterr().err
    run = Run.load(run_dir, device="cpu")
    assert run.cfg.data == "moons" and run.cfg.init_from_teacher is False and not run.cfg.teacher
    assert (run.cfg.width, run.cfg.depth) == (32, 2)
    out = run.sample(10, nfe=1)
    assert out.samples.shape == (10, 2) and out.nfe == 1 and torch.isfinite(out.samples).all()
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--nfe", "1,2", "-n", "200", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["nfe_requested"] for r in report["results"]] == [1, 2] and report["heldout_pairs"] == 30


def test_callable_pairs_record_their_prior_and_refuse_a_student_of_another(velocity_pairs, teacher_file, tmp_path,
                                                                           capsys):
    """A callable's pairs record N(0, I) (or the --prior they were drawn from); a student of another prior exits 2."""
    assert PairData.open(velocity_pairs).manifest["prior"] == "N(0, I)"
    student = ["train", "--method", "lines", "--steps", "2", "--progress", "false", "--width", "16", "--depth", "2"]
    assert main([*student, "--pairs", str(velocity_pairs), "--prior", "wide", "--out", str(tmp_path / "s")]) == 2
    line = _one_line_error(capsys)
    assert "start from noise z ~ N(0, I), but this run samples z ~ N(0, diag(36, 1)) (--prior wide)" in line
    wide = tmp_path / "wide"
    assert _pairs_cli(f"{teacher_file}:velocity", wide, "--prior", "wide", n=200) == 0
    pairs = PairData.open(wide)
    assert pairs.manifest["prior"] == "N(0, diag(36, 1))"
    _, z = pairs.gather(np.arange(200))
    torch.testing.assert_close(z, _z(200) * torch.tensor([6.0, 1.0]), rtol=0, atol=1e-6)
    assert main([*student, "--pairs", str(wide), "--out", str(tmp_path / "s2")]) == 2
    assert "but this run samples z ~ N(0, I) (--prior standard)" in _one_line_error(capsys)
    assert main([*student, "--pairs", str(wide), "--prior", "wide", "--out", str(tmp_path / "s3")]) == 0
