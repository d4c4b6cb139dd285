"""DDIM (eta = 0) is exactly Euler in rectified coordinates on the scheduler's own grid (``docs/teachers.md``).

x = alpha x0 + sigma eps divided by alpha + sigma is y = (1 - s) x0 + s eps, s = sigma / (alpha + sigma);
a DDIM step x0_hat, eps_hat -> alpha' x0_hat + sigma' eps_hat is y' = y + (s' - s)(eps_hat - x0_hat).
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from straightflow.errors import StraightflowError  # noqa: E402
from straightflow.teacher_adapters import DiffusersSamplerTeacher, DiffusersVelocity, euler_on_grid, load_diffusers  # noqa: E402

STEPS = 8


def _diffusers_ddim_loop(unet, scheduler_dir, z, steps=STEPS):
    """diffusers' own DDIM loop, written out (DDIMPipeline takes no noise of ours and clamps to [0, 1])."""
    sch = diffusers.DDIMScheduler.from_pretrained(str(scheduler_dir))
    sch.set_timesteps(steps)
    x = z.clone()
    with torch.no_grad():
        for t in sch.timesteps:
            x = sch.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    return x, sch


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("set_alpha_to_one,spacing", [(True, "leading"), (False, "leading"), (True, "trailing")])
def test_ddim_sampler_equals_diffusers_and_euler_on_its_grid(prediction_type, set_alpha_to_one, spacing, make_pipeline,
                                                             tmp_path):
    sched = diffusers.DDIMScheduler(prediction_type=prediction_type, clip_sample=False,
                                    set_alpha_to_one=set_alpha_to_one, timestep_spacing=spacing)
    folder = make_pipeline(tmp_path / "pipe", sched)
    model = load_diffusers(folder)
    z = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    reference, ref_sched = _diffusers_ddim_loop(model.unet, folder / "scheduler", z)

    sampler = DiffusersSamplerTeacher(model.unet, model.scheduler("ddim"), STEPS)
    res = sampler(z)
    assert res.nfe == STEPS
    torch.testing.assert_close(res.samples, reference, rtol=0, atol=0)  # the same loop

    velocity = DiffusersVelocity(model.unet, model.alphas_cumprod(), prediction_type)
    grid = velocity.ddim_grid(ref_sched)
    # without set_alpha_to_one DDIM ends at alphas_cumprod[0]'s noise
    assert len(grid) == STEPS + 1 and (grid[-1] == 0.0) == set_alpha_to_one
    y = euler_on_grid(velocity, velocity.to_rectified(z, grid[0]), grid)
    assert y.nfe == STEPS
    torch.testing.assert_close(velocity.to_vp(y.samples, grid[-1]), reference, rtol=1e-5, atol=1e-5)


def test_a_ddpm_folder_becomes_ddim_ending_on_the_data(make_pipeline, tmp_path):
    # a DDPM config has no set_alpha_to_one: converted to DDIM it takes True (the last step lands on alphas_cumprod = 1)
    folder = make_pipeline(tmp_path / "pipe", diffusers.DDPMScheduler(clip_sample=False))
    model = load_diffusers(folder)
    sch = model.scheduler("ddim")
    assert (type(sch).__name__ == "DDIMScheduler" and sch.config.set_alpha_to_one
            and float(sch.final_alpha_cumprod) == 1.0)
    sch.set_timesteps(4)
    velocity = DiffusersVelocity(model.unet, model.alphas_cumprod(), model.prediction_type)
    assert velocity.ddim_grid(sch)[-1] == 0.0
    # DDPM and DDIM share the training table
    torch.testing.assert_close(velocity.schedule.acp.float(), sch.alphas_cumprod, rtol=0, atol=0)


def test_clip_sample_is_the_configs_unless_overridden(make_pipeline, tmp_path):
    folder = make_pipeline(tmp_path / "pipe", diffusers.DDPMScheduler())  # diffusers' default: clip_sample=True
    model = load_diffusers(folder)
    assert model.scheduler("ddim").config.clip_sample is True
    assert model.scheduler("ddim", clip_sample=False).config.clip_sample is False
    with pytest.raises(StraightflowError, match="applies to the ddim scheduler"):
        model.scheduler("euler", clip_sample=False)


def test_linspace_spacing_is_not_one_grid(make_pipeline, tmp_path):
    folder = make_pipeline(tmp_path / "pipe", diffusers.DDIMScheduler(clip_sample=False, timestep_spacing="linspace"))
    model = load_diffusers(folder)
    sch = model.scheduler("ddim")
    sch.set_timesteps(STEPS)
    with pytest.raises(StraightflowError, match="not Euler on one grid"):
        DiffusersVelocity(model.unet, model.alphas_cumprod()).ddim_grid(sch)


@pytest.mark.parametrize("name", ["dpm", "euler"])
def test_other_schedulers_run_their_own_loop_with_honest_nfe(name, make_pipeline, tmp_path):
    folder = make_pipeline(tmp_path / "pipe", diffusers.DDPMScheduler(clip_sample=False))
    teacher = DiffusersSamplerTeacher.from_pretrained(folder, steps=5, scheduler=name)
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    state = torch.random.get_rng_state()
    a, b = teacher(z), teacher(z)
    assert torch.equal(torch.random.get_rng_state(), state)  # no draw from the global RNG
    assert a.nfe == b.nfe == 5 and torch.equal(a.samples, b.samples) and torch.isfinite(a.samples).all()
    assert teacher.settings() == {"solver": f"diffusers-{name}", "nfe": 5}


def test_class_conditional_unet_gets_the_labels(make_unet):
    from straightflow.teachers import VelocityTeacher

    unet = make_unet(num_class_embeds=3)
    with torch.no_grad():  # a random class embedding starts at zero-ish scale; make the labels matter
        unet.class_embedding.weight.mul_(50)
    sch = diffusers.DDIMScheduler(clip_sample=False)
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y0, y1 = torch.tensor([0, 0]), torch.tensor([1, 1])
    sampler = DiffusersSamplerTeacher(unet, sch, 3)
    sch_ref = diffusers.DDIMScheduler(clip_sample=False)
    sch_ref.set_timesteps(3)
    ref = z.clone()
    with torch.no_grad():
        for t in sch_ref.timesteps:
            ref = sch_ref.step(unet(ref, t, class_labels=y1).sample, t, ref, eta=0.0).prev_sample
    torch.testing.assert_close(sampler(z, y1).samples, ref, rtol=0, atol=0)
    assert not torch.allclose(sampler(z, y0).samples, ref)
    velocity = DiffusersVelocity(unet, sch.alphas_cumprod)
    teacher = VelocityTeacher(velocity, "euler", 3, null_label=None)
    a, b = teacher(z, y0), teacher(z, y1)
    assert a.nfe == b.nfe == 3 and not torch.allclose(a.samples, b.samples)
