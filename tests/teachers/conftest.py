"""Tiny randomly initialised diffusers models saved in ``save_pretrained`` layout (nothing is downloaded)."""

import pytest
import torch


def tiny_unet(seed: int = 0, num_class_embeds=None):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=num_class_embeds).eval()


def save_pipeline(path, scheduler, seed: int = 0):
    """A DDIM / DDPM pipeline folder (model_index.json, unet/, scheduler/) of a tiny random UNet."""
    from diffusers import DDIMPipeline, DDPMPipeline, DDPMScheduler

    pipe_cls = DDPMPipeline if isinstance(scheduler, DDPMScheduler) else DDIMPipeline
    pipe_cls(unet=tiny_unet(seed), scheduler=scheduler).save_pretrained(str(path))
    return path


@pytest.fixture
def make_unet():
    """``make_unet(seed=0, num_class_embeds=None)``: a tiny random UNet2DModel for 1 x 8 x 8 samples."""
    return tiny_unet


@pytest.fixture
def make_pipeline():
    """``make_pipeline(path, scheduler, seed=0)``: a tiny random pipeline folder with ``scheduler``."""
    return save_pipeline
