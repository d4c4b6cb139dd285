"""``straightflow pairs --teacher-diffusers / --teacher-edm / --teacher-arg`` (``docs/teachers.md``)."""

import json
import textwrap

import numpy as np
import pytest
import torch

from straightflow.cli.main import main
from straightflow.data.pairs import PairData
from straightflow.noise import seeded_noise

EDM_FILE = textwrap.dedent(
    """
    import torch

    def make(m="0.5", c="0.3"):
        m, c = float(m), float(c)

        def denoiser(x, sigma):
            sigma = sigma.view(-1, *([1] * (x.dim() - 1)))
            return m + c**2 / (c**2 + sigma**2) * (x - m)

        return denoiser

    def affine(scale="1", shift="0"):
        scale, shift = float(scale), float(shift)
        return lambda z: scale * z + shift

    def not_a_factory():
        return 3
    """
)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("straightflow: error: ")
    return err[0]


@pytest.fixture
def teacher_file(tmp_path):
    path = tmp_path / "edm_teacher.py"
    path.write_text(EDM_FILE)
    return path


# ------------------------------------------------------------------ diffusers folders
@pytest.fixture
def pipeline(tmp_path, make_pipeline):
    diffusers = pytest.importorskip("diffusers")
    return make_pipeline(tmp_path / "pipe", diffusers.DDPMScheduler(clip_sample=False))


def _diffusers_cli(folder, out, *extra, n=12, nfe=3):
    return main(["pairs", "--teacher-diffusers", str(folder), "--data", "digits", "-n", str(n), "--nfe", str(nfe),
                 "--out", str(out), "--quiet", *extra])


def test_sampler_pairs_are_diffusers_ddim_loop_and_record_the_model(pipeline, tmp_path):
    import logging

    import diffusers

    out = tmp_path / "pairs"
    # as in a fresh process, where loading warns that accelerate is missing
    diffusers.utils.logging.set_verbosity_warning()
    assert _diffusers_cli(pipeline, out) == 0
    assert diffusers.utils.logging.get_verbosity() == logging.ERROR  # diffusers' notices are silenced
    pairs = PairData.open(out)
    m = pairs.manifest
    assert (m["teacher_kind"] == "diffusers" and m["solver"] == "diffusers-ddim" and m["nfe"] == m["nfe_used"] == 3
            and m["steps"] == 3)
    assert (m["teacher"] == f"diffusers {pipeline.resolve()}" and m["scheduler"] == "ddim"
            and m["scheduler_class"] == "DDIMScheduler")
    assert m["prediction_type"] == "epsilon" and m["set_alpha_to_one"] is True and m["clip_sample"] is False
    weights = pipeline / "unet" / "diffusion_pytorch_model.safetensors"
    import hashlib

    assert m["unet_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest() == m["diffusers"]["unet_sha256"]
    assert m["diffusers"]["path"] == str(pipeline.resolve()) and m["teacher_config"]["data"] == "digits"
    settings = json.loads((out / "settings.json").read_text())
    assert settings["unet_sha256"] == m["unet_sha256"] and settings["steps"] == 3

    x, z = pairs.gather(np.arange(12))
    torch.testing.assert_close(z, seeded_noise(12, (1, 8, 8), 0, "pairs"), rtol=0, atol=0)
    unet = diffusers.UNet2DModel.from_pretrained(str(pipeline / "unet"))
    sch = diffusers.DDIMScheduler.from_config(diffusers.DDPMScheduler.load_config(str(pipeline / "scheduler")))
    sch.set_timesteps(3)
    ref = z.clone()
    with torch.no_grad():
        for t in sch.timesteps:
            ref = sch.step(unet(ref, t).sample, t, ref, eta=0.0).prev_sample
    torch.testing.assert_close(x, ref, rtol=1e-5, atol=1e-5)


def test_changed_steps_or_weights_never_resume_into_the_old_folder(pipeline, tmp_path, make_pipeline, capsys):
    import diffusers

    out = tmp_path / "pairs"
    assert _diffusers_cli(pipeline, out) == 0
    capsys.readouterr()
    assert _diffusers_cli(pipeline, out) == 0
    assert "0 shards generated, 1 reused" in capsys.readouterr().out
    assert _diffusers_cli(pipeline, out, nfe=4) == 2
    assert "other settings" in (line := _one_line_error(capsys)) and "steps: 3 -> 4" in line
    make_pipeline(pipeline, diffusers.DDPMScheduler(clip_sample=False), seed=1)  # new weights in the same folder
    assert _diffusers_cli(pipeline, out) == 2
    assert "unet_sha256" in _one_line_error(capsys)


@pytest.mark.parametrize("solver,nfe,calls", [("euler", 3, 3), ("heun", 3, 3)])
def test_velocity_route_pairs(solver, nfe, calls, pipeline, tmp_path):
    out = tmp_path / "pairs"
    assert _diffusers_cli(pipeline, out, "--teacher-kind", "velocity", "--solver", solver, nfe=nfe) == 0
    m = PairData.open(out).manifest
    assert m["solver"] == solver and m["nfe_used"] == calls and m["callable_kind"] == "velocity"
    assert m["diffusers"]["s_range"][1] < 1


def test_a_unet_folder_with_a_scheduler_folder(pipeline, tmp_path):
    out = tmp_path / "pairs"
    args = ["--scheduler-dir", str(pipeline / "scheduler"), "--scheduler", "euler"]
    assert _diffusers_cli(pipeline / "unet", out, *args, n=4, nfe=2) == 0
    m = PairData.open(out).manifest
    assert m["scheduler_class"] == "EulerDiscreteScheduler" and m["solver"] == "diffusers-euler" and m["nfe_used"] == 2


@pytest.mark.parametrize(
    "extra,data,message",
    [
        (["--scheduler", "pndm"], "digits", "unknown --scheduler"),
        ([], "moons", "has shape 2"),
        (["--teacher-kind", "velocity", "--clip-sample", "true"], "digits", "never clips"),
        (["--teacher-arg", "a=1"], "digits", "--teacher-arg goes with"),
    ],
    ids=["bad-scheduler", "wrong-data", "clip-velocity", "teacher-arg"],
)
def test_diffusers_bad_input_is_a_one_line_error(extra, data, message, pipeline, tmp_path, capsys):
    argv = ["pairs", "--teacher-diffusers", str(pipeline), "--data", data, "-n", "4", "--out", str(tmp_path / "o"),
            "--quiet", *extra]
    assert main(argv) == 2
    assert message in _one_line_error(capsys)


def test_a_model_folder_without_scheduler_is_a_one_line_error(pipeline, tmp_path, capsys):
    assert _diffusers_cli(pipeline / "unet", tmp_path / "o") == 2
    assert "--scheduler-dir" in _one_line_error(capsys)
    assert _diffusers_cli(tmp_path, tmp_path / "o") == 2
    assert "neither a diffusers pipeline folder" in _one_line_error(capsys)


def test_missing_diffusers_is_a_one_line_error(pipeline, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    assert _diffusers_cli(pipeline, tmp_path / "o") == 2
    assert "pip install straightflow[diffusers]" in _one_line_error(capsys)


# ------------------------------------------------------------------ EDM denoisers and teacher factories
def _edm_cli(spec, out, *extra, n=40, nfe=35):
    return main(["pairs", "--teacher-edm", spec, "--data", "moons", "-n", str(n), "--nfe", str(nfe), "--out", str(out),
                 "--quiet", *extra])


def test_edm_sampler_pairs_of_a_factory(teacher_file, tmp_path):
    out = tmp_path / "pairs"
    assert _edm_cli(f"{teacher_file}:make", out, "--teacher-arg", "m=0.5", "--teacher-arg", "c=0.3") == 0
    pairs = PairData.open(out)
    m = pairs.manifest
    assert m["solver"] == "edm-heun" and m["nfe_used"] == 35 and m["edm"]["steps"] == 18 and m["teacher_kind"] == "edm"
    assert (m["teacher_args"] == {"c": "0.3", "m": "0.5"}
            and m["teacher_callable_path"] == f"{teacher_file.resolve()}:make")
    x, z = pairs.gather(np.arange(40))
    exact = 0.5 + 0.3 * (80 * z - 0.5) / (0.3**2 + 80**2) ** 0.5
    assert float((x - exact).abs().max()) < 0.1


def test_edm_velocity_pairs(teacher_file, tmp_path):
    out = tmp_path / "pairs"
    assert _edm_cli(f"{teacher_file}:make", out, "--teacher-arg", "m=0.5", "--teacher-kind", "velocity",
                    "--solver", "heun", nfe=31) == 0
    pairs = PairData.open(out)
    x, z = pairs.gather(np.arange(40))
    assert pairs.manifest["nfe_used"] == 31 and float((x - (0.5 + 0.3 * z)).abs().max()) < 0.02


def test_edm_even_nfe_is_a_one_line_error(teacher_file, tmp_path, capsys):
    assert _edm_cli(f"{teacher_file}:make", tmp_path / "o", "--teacher-arg", "m=0", nfe=36) == 2
    assert "odd --nfe" in _one_line_error(capsys)


def _callable_cli(spec, out, *extra):
    return main(["pairs", "--teacher-callable", spec, "--teacher-kind", "sampler", "--data", "moons", "-n", "30",
                 "--out", str(out), "--quiet", *extra])


def test_teacher_args_make_the_teacher_and_are_its_identity(teacher_file, tmp_path, capsys):
    out = tmp_path / "pairs"
    assert _callable_cli(f"{teacher_file}:affine", out, "--teacher-arg", "scale=2", "--teacher-arg", "shift=1") == 0
    pairs = PairData.open(out)
    x, z = pairs.gather(np.arange(30))
    torch.testing.assert_close(x, 2 * z + 1, rtol=0, atol=1e-6)
    assert pairs.manifest["teacher_args"] == {"scale": "2", "shift": "1"}
    assert pairs.manifest["teacher_callable_path"] == f"{teacher_file.resolve()}:affine"
    capsys.readouterr()
    assert _callable_cli(f"{teacher_file}:affine", out, "--teacher-arg", "scale=3", "--teacher-arg", "shift=1") == 2
    line = _one_line_error(capsys)
    assert "other settings" in line and "teacher_args" in line and "'scale': '3'" in line
    assert _callable_cli(f"{teacher_file}:affine", out) == 2  # no arguments at all is another teacher too
    assert "other settings" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "spec,args,message",
    [
        ("affine", ["--teacher-arg", "scale"], "use KEY=VALUE"),
        ("affine", ["--teacher-arg", "scale=1", "--teacher-arg", "scale=2"], "given twice"),
        ("affine", ["--teacher-arg", "bogus=1"], "raised TypeError"),
        ("not_a_factory", ["--teacher-arg", "a=1"], "raised TypeError"),
        ("make", ["--teacher-arg", "m=x"], "raised ValueError"),
    ],
    ids=["no-equals", "twice", "unknown-keyword", "takes-none", "bad-value"],
)
def test_teacher_arg_mistakes_are_one_line_errors(spec, args, message, teacher_file, tmp_path, capsys):
    assert _callable_cli(f"{teacher_file}:{spec}", tmp_path / "o", *args) == 2
    assert message in _one_line_error(capsys)
