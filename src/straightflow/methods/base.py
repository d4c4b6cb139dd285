"""What a training method is: a coupling + an objective + an initialisation.

=========  ========================  ==================================  ===========
method     coupling                  objective                           init
=========  ========================  ==================================  ===========
rectified  independent               velocity                            fresh
ot         minibatch OT              velocity                            fresh
curvature  learned q_phi(z|x)        velocity (+ beta KL)                fresh
reflow     teacher pairs             velocity                            fresh or teacher
distill    teacher pairs             one-step endpoint at t = 1          teacher
lines      teacher pairs             endpoint (+ recon, adversarial)     teacher
=========  ========================  ==================================  ===========

A method subclasses :class:`Method`, one file per method in this package; each
validates its own config fields and names its default sampler. The trainer, the
run loader and ``eval`` go only through this interface (``docs/architecture.md``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..conditioning import drop_labels
from ..couplings import Coupling, IndependentCoupling
from ..objectives import VelocityObjective


class Method:
    """Defaults: independent coupling, velocity objective, fresh weights, Euler sampling.

    Everything that is particular to a method lives on its subclass: what it is (``description``,
    the model card's line), how it samples (``default_solver``, :meth:`default_nfe`), what it
    trains on (``trains_on_pairs``, ``starts_from_teacher``), what its coupling is and how it
    reports it (:meth:`build_coupling`, :meth:`coupling_label`, :meth:`card_note`), its
    objective and extra trainer, its KL budget (:meth:`build_kl_budget`, :meth:`set_beta`), its
    ``eval`` extras and the checks of its config fields (:meth:`validate`). A method of your own
    is a subclass passed as ``sf.train(method=MyMethod(), ...)`` (``docs/architecture.md``).
    """

    name: str = ""
    #: one line on what the method is, for the model card of an export
    description: str = ""
    #: the sampler ``sample`` / ``eval`` use for runs of this method unless told otherwise
    default_solver: str = "euler"
    #: trains on teacher pairs (``--pairs``)
    trains_on_pairs: bool = False
    #: default of ``--init-from-teacher`` when the pairs come from a teacher run
    starts_from_teacher: bool = False
    #: config defaults of a student of vector pairs (fields not given explicitly)
    vector_pair_defaults: dict = {}
    #: config defaults of a student of image pairs (samples with more than one axis)
    image_pair_defaults: dict = {}
    #: takes a user's encoder module (``sf.train(encoder_net=...)``) for its coupling
    accepts_encoder: bool = False

    def validate(self, cfg) -> None:
        """Check this method's config fields; raise StraightflowError with one line."""

    def pair_defaults(self, shape: tuple, explicit: set[str]) -> dict:
        """Config defaults of a student of pairs of this sample ``shape``, for the fields not in ``explicit``:
        :attr:`vector_pair_defaults` for one-axis (vector) pairs, :attr:`image_pair_defaults` for more axes, none
        for pairs that record no shape."""
        if not shape:
            return {}
        defaults = self.vector_pair_defaults if len(shape) == 1 else self.image_pair_defaults
        return {k: v for k, v in defaults.items() if k not in explicit}

    def default_nfe(self, cfg) -> int:
        """The NFE an export recommends when no quality was measured (a method trained for k steps samples in k)."""
        return 4

    def coupling_label(self, cfg) -> str:
        """How the coupling is named in plots (``independent``, ``beta = 10``, ...)."""
        return "independent"

    def card_note(self, cfg) -> str:
        """What the model card adds after the method's name (e.g. `` (beta 10)``); empty by default."""
        return ""

    def uses_custom_encoder(self, cfg) -> bool:
        """Whether the run's coupling wraps a user's own encoder module (which an export cannot hold)."""
        return False

    def set_beta(self, module: nn.Module, beta: float) -> None:
        """Give the coupling the beta of the KL budget (:meth:`build_kl_budget`) for the next step."""
        raise NotImplementedError(f"method {self.name!r} has no KL budget")

    def build_coupling(self, cfg, data, prior, encoder: nn.Module | None = None) -> Coupling:
        return IndependentCoupling(prior)

    def build_objective(self, cfg, data, device: torch.device) -> tuple[object, object | None]:
        """``(objective, aux)``: the loss callable and an optional extra trainer stepped after each
        optimizer step (``aux.step(generator) -> stats``, checkpointed through ``state_dict``)."""
        return VelocityObjective(cfg.t_min), None

    def build_kl_budget(self, cfg):
        """The :class:`~straightflow.couplings.KLBudget` that adapts the coupling's beta during
        training (``--kl-target``), or None: the trainer steps it after each optimizer step."""
        return None

    def prepare(self, module: nn.Module, cfg, data) -> None:
        """Before training: e.g. copy a teacher's weights into the student."""

    def evaluate_extra(self, run, reference: torch.Tensor, n: int, seed: int, nfes: list[int], solver: str, metric,
                       labels: torch.Tensor | None = None, guidance: float | None = None) -> dict:
        """Extra ``eval`` keys of runs of this method (``labels``: the reference's, for conditional runs; ``guidance``:
        the weight ``eval`` samples at, which every sampled extra must use too, default 1)."""
        return {}


class FlowTrainingModule(nn.Module):
    """Velocity net + coupling; ``forward`` returns the training loss.

    Wrapping both in one module lets DDP synchronise every trained parameter
    (the learned coupling's included) and lets one EMA average them all.
    ``objective`` is set for training (``Method.build_objective``); a loaded run has none.
    Class-conditional (``num_classes > 0``): ``forward(batch, generator, y)``; the coupling
    sees the true labels, the objective labels replaced by the null class (index
    ``num_classes``) at rate ``cond_drop`` (classifier-free guidance, ``docs/conditional.md``).
    """

    def __init__(self, velocity: nn.Module, coupling: Coupling, objective=None, num_classes: int = 0,
                 cond_drop: float = 0.0):
        super().__init__()
        self.velocity = velocity
        self.coupling = coupling
        self.objective = objective
        self.num_classes, self.cond_drop = int(num_classes), float(cond_drop)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def null_label(self) -> int | None:
        """The null class of classifier-free guidance (None for an unconditional model)."""
        return self.num_classes if self.conditional else None

    def forward(self, batch, generator: torch.Generator, y: torch.Tensor | None = None):
        if self.objective is None:
            raise RuntimeError("FlowTrainingModule has no objective: set module.objective (e.g. from "
                               "Method.build_objective)")
        if (y is not None) != self.conditional:
            raise RuntimeError("a conditional module needs labels y and an unconditional one takes none")
        pair = self.coupling(batch, generator, y)
        if y is None:
            loss, stats = self.objective(self.velocity, pair.x, pair.z, generator)
        else:
            loss, stats = self.objective(self.velocity, pair.x, pair.z, generator,
                                         y=drop_labels(pair.y, self.cond_drop, self.num_classes, generator))
        stats = dict(stats)
        stats.update(pair.stats)
        if pair.aux_loss is not None:
            loss = loss + pair.aux_loss
        stats["loss"] = loss.detach()
        return loss, stats
