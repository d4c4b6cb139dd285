"""``TeacherPairCoupling``: teacher pairs pass through unchanged; plain data gets independent prior noise."""

import torch

from straightflow.couplings import TeacherPairCoupling
from straightflow.priors import DiagonalGaussianPrior


def test_pairs_pass_through_with_their_labels_and_draw_nothing():
    x_star, z, y = torch.randn(5, 2), torch.randn(5, 2), torch.arange(5)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    pair = TeacherPairCoupling()((x_star, z), g, y)
    assert pair.x is x_star and pair.z is z and pair.y is y and pair.aux_loss is None
    assert torch.equal(g.get_state(), state)  # the pair is the teacher's: no noise is drawn


def test_plain_data_is_paired_with_the_priors_noise():
    prior = DiagonalGaussianPrior(torch.tensor([6.0, 1.0]))
    x = torch.zeros(20000, 2)
    pair = TeacherPairCoupling(prior)(x, torch.Generator().manual_seed(0))
    expected = prior.sample(x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pair.z, expected) and pair.x is x
    assert torch.allclose(pair.z.std(0), torch.tensor([6.0, 1.0]), rtol=0.03)
