"""The interfaces of a *part*: one method plugged into the composed GAN step.

A part is one of three kinds, each a small interface the step builder
(:mod:`jaxgan_lth.training.step`) wires without knowing the method:

* :class:`Augmentation` -- a D-input augmentation, applied to every image D sees (reals and
  fakes, D and G steps): ``x <- part.augment(key, x, state, hp)``; adaptive ones (ADA) update
  their state from D's real logits after each D step (:meth:`Augmentation.observe`).
* :class:`FeaturePerturbation` -- a perturbation at a model's named point (D's pooled
  features ``d_features``, G's first-layer output ``g_first``) that changes how the
  adversarial loss is computed (AdvAug PGD, the noise baseline).
* :class:`LossTerm` -- a regulariser added to D's and/or G's loss, returning a scalar and its
  metrics (LeCam, NICE's consistency, R1, path-length regularisation).

A part of any kind may also change D's *training forwards* (:attr:`Part.modifies_d`,
:meth:`Part.d_forward`): extra variable collections and PRNG streams passed to every training
forward of D (D step, G step, and :attr:`DContext.d_features`), e.g. NICE's adaptive noise in D's
blocks (the ``d_noise`` collection of :mod:`jaxgan_lth.models.base`).

Every part owns one config section (its :attr:`Part.section`), declares it once with its
default values (:meth:`Part.default_config`; ``configs/default.py`` builds the default config's
sections, and the ticket's copies where :attr:`Part.ticket_copy`, from the registry), validates it
(:meth:`Part.validate`, with the part's own constants), names the *traced strengths* it reads
(:attr:`Part.HPARAMS`: swept without recompiling) and may keep state between steps
(:meth:`Part.init_state`): that state lives in ``state["parts"][name]`` of the train-state
pytree, so it is checkpointed, resumed and vmapped over runs like the parameters.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar

import jax
import ml_collections

Array = jax.Array
Pytree = Any

#: How a lazy regulariser (interval k > 1) is applied. ``"separate_step"``: its own Adam step
#: every k G iterations, Adam scaled by c = k / (k + 1) (stylegan2-ada-pytorch, the default;
#: :mod:`jaxgan_lth.training.lazy_reg`). ``"loss_gain"``: k x the penalty added to the main loss
#: every
#: k iterations, Adam unscaled (this package before issue 27).
LAZY_MODES = ("separate_step", "loss_gain")


def check_lazy(cfg, where: str) -> None:
    """Raises ValueError unless ``cfg.lazy`` (absent = ``"separate_step"``) is in LAZY_MODES."""
    mode = cfg.get("lazy", LAZY_MODES[0])
    if mode not in LAZY_MODES:
        raise ValueError(f"{where}.lazy = {mode!r}; accepted: {LAZY_MODES}.")


@dataclasses.dataclass(frozen=True)
class HParam:
    """A traced strength of a part.

    Attributes:
      key: the key in the part's config section holding the default value.
      low, high: accepted closed range (``None`` = unbounded).
      high_open: the upper bound is excluded (e.g. a decay in [0, 1)).
    """

    key: str
    low: float | None = 0.0
    high: float | None = None
    high_open: bool = False

    def check(self, name: str, value: float, where: str) -> None:
        """Raises ValueError naming ``where`` when ``value`` is outside the range."""
        bad = (self.low is not None and value < self.low) or (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )
        if bad:
            hi = "inf)" if self.high is None else (f"{self.high})" if self.high_open
                                                   else f"{self.high}]")
            raise ValueError(f"{where}: {name} = {value} must be in [{self.low}, {hi}.")


class Part(abc.ABC):
    """Base class of a part (see the module docstring).

    Class attributes:
      name: registry name, also the key of the part's state in ``state["parts"]``.
      section: the config section read (``config.<section>``).
      kind: ``"augment"``, ``"perturb"`` or ``"loss"``.
      HPARAMS: ``{traced name: HParam}``; traced names are global (``adv_step_size``), so a
        sweep names them without a section.
      modifies_d: the part implements :meth:`d_forward` (the step calls it only then, so a
        config without such a part compiles the step it always did).
      ticket_copy: the ticket stage has its own copy of the section (``config.ticket.<section>``,
        used in place of the top-level one by the ticket stage); False: the top-level section
        serves every stage (R1, path length).
    """

    name: ClassVar[str] = ""
    section: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    HPARAMS: ClassVar[dict[str, HParam]] = {}
    #: Whether :meth:`d_forward` adds collections/rngs to D's training forwards.
    modifies_d: ClassVar[bool] = False
    #: Whether ``config.ticket`` holds its own copy of the section (see the class docstring).
    ticket_copy: ClassVar[bool] = True

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.cfg = config[self.section]

    @classmethod
    @abc.abstractmethod
    def enabled(cls, config: ml_collections.ConfigDict) -> bool:
        """Whether ``config`` switches this part on (the section exists and is active)."""

    @classmethod
    @abc.abstractmethod
    def default_config(cls, **overrides: Any) -> ml_collections.ConfigDict:
        """The part's config section with its default values: every key, documented inline.

        The one place a section's keys and defaults are written: ``configs/default.py`` builds
        ``config.<section>`` (and ``config.ticket.<section>`` where :attr:`ticket_copy`) from it,
        and the other configs call it to replace a section. The section switches the part off
        unless an override switches it on.

        Args:
          **overrides: the part's switch (e.g. DiffAugment's ``policy``), as keyword arguments
            of the subclass's signature.

        Returns:
          A new ``ml_collections.ConfigDict`` (type-safe, unlocked) each call.
        """

    @classmethod
    def validate(cls, config: ml_collections.ConfigDict, prefix: str = "") -> None:
        """Checks ``config.<section>``; messages name ``config.<prefix><section>.<key>``.

        Raises:
          ValueError: a bad value, naming the key and what is accepted.
        """
        if cls.section not in config:
            return
        c = config[cls.section]
        for name, hp in cls.HPARAMS.items():
            hp.check(name, float(c[hp.key]), f"config.{prefix}{cls.section}.{hp.key}")

    def hparams(self) -> dict[str, float]:
        """Default values of the traced strengths (from the config section)."""
        return {name: float(self.cfg[hp.key]) for name, hp in self.HPARAMS.items()}

    def init_state(self) -> Pytree:
        """State kept between steps (``state["parts"][name]``); ``None`` = stateless."""
        return None

    def metrics_of_state(self, state: Pytree) -> dict[str, Array]:
        """Scalars of the state logged every log step (e.g. ADA's p); default none."""
        return {}

    def d_forward(self, key: Array, state: Pytree, hp: dict, phase: str) -> tuple[dict, dict]:
        """Extra ``(variable collections, rngs)`` for a training forward of D.

        Called only when :attr:`modifies_d`; merged into D's variables and ``rngs`` of the D
        step's forward (``phase="d"``, also :attr:`DContext.d_features`) and the G step's
        (``phase="g"``). Default: none.

        Args:
          key: PRNG key of this forward (independent per forward and per part).
          state: the part's state (``state["parts"][name]`` or None).
          hp: traced strengths.
          phase: ``"d"`` or ``"g"``.
        """
        return {}, {}


class Augmentation(Part):
    """A D-input augmentation (applied to reals and fakes, in D and G steps)."""

    kind = "augment"

    @abc.abstractmethod
    def augment(self, key: Array, x: Array, state: Pytree, hp: dict) -> Array:
        """Augments a batch ``x`` ``[B, H, W, C]`` in [-1, 1]; differentiable in ``x``."""

    def observe(self, state: Pytree, logits_real: Array, hp: dict) -> Pytree:
        """New state after a D step that saw D's logits ``[B]`` on (augmented) reals."""
        return state

    def observe_d_step(self, state: Pytree, obs: AugObservation, hp: dict) -> Pytree:
        """New state after a D step, from :class:`AugObservation` (the step calls this one).

        Default: :meth:`observe` with ``obs.logits_real``. A part that needs its own random
        draws of the step (MaskedGAN's per-image band drops) overrides this and redraws them
        from ``obs.key``.
        """
        return self.observe(state, obs.logits_real, hp)


@dataclasses.dataclass
class AugObservation:
    """What an augmentation sees after a D step.

    Attributes:
      logits_real: D's logits ``[B]`` on the augmented reals.
      key: the PRNG key this augmentation's :meth:`Augmentation.augment` got in that D step.
      x_shape: shape of the batch it augmented, ``(2B, H, W, C)``: reals first, then fakes.
    """

    logits_real: Array
    key: Array
    x_shape: tuple


class FeaturePerturbation(Part):
    """A perturbation of features at the models' named points.

    It reshapes the adversarial loss of D (at ``d_features``) and/or G (at ``g_first``).
    """

    kind = "perturb"

    def perturbs_d(self) -> bool:
        """Whether D's update is perturbed (at D's pooled features)."""
        return False

    def perturbs_g(self) -> bool:
        """Whether G's update is perturbed (at G's first-layer output)."""
        return False

    def augments_adv_branch(self) -> bool:
        """Whether G's perturbed branch goes through the D-input augmentations, as its clean one.

        True (default): the step augments the fakes with ``delta`` at G's first-layer output
        before D, as the clean fakes. False: they reach D un-augmented (UDEG BigGAN's
        ``train_eval.py``). Read only when :meth:`perturbs_g`.
        """
        return True

    @abc.abstractmethod
    def d_loss(self, key: Array, head: Callable, h: Array, labels: Any, num_real: int,
               clean: Array, hp: dict) -> tuple[Array, dict]:
        """D's loss from the clean loss and the features.

        Args:
          key: PRNG key.
          head: ``head(features, labels) -> logits [B]``, D after its feature point.
          h: D's features ``[2B, F]``, reals first then fakes.
          labels: ``[2B]`` class labels or None.
          num_real: B.
          clean: the clean adversarial loss of D.
          hp: traced strengths.

        Returns:
          ``(loss, metrics)``.
        """

    @abc.abstractmethod
    def g_loss(self, key: Array, logits_at: Callable, point_shape: tuple, clean: Array,
               hp: dict) -> tuple[Array, dict]:
        """G's loss from the clean loss.

        Args:
          key: PRNG key.
          logits_at: ``logits_at(delta, frozen) -> D logits [B]`` of the fakes with ``delta``
            added at G's first-layer output (``frozen``: G's parameters gradient-stopped, for
            the search of ``delta``).
          point_shape: shape of G's first-layer output ``[B, ...]``.
          clean: the clean adversarial loss of G.
          hp: traced strengths.
        """


@dataclasses.dataclass
class DContext:
    """What a loss term sees in the D step (inside D's loss, so differentiable in D).

    Attributes:
      logits_real: D's logits ``[B]`` on the (augmented) reals.
      logits_fake: D's logits ``[B]`` on the (augmented) fakes.
      x_real: the (augmented) real images ``[B, H, W, C]`` given to D.
      d_apply: ``d_apply(x) -> logits [B]`` with the current D parameters (for gradient
        penalties such as R1).
      step: G iterations done before this one (int32 scalar).
      x: the whole (augmented) D input ``[2B, H, W, C]``, reals first then fakes.
      features: D's pooled features ``[2B, F]`` of ``x`` in this forward (the ``d_features``
        point, before any feature perturbation).
      d_features: ``d_features(x, key) -> [N, F]``: D's pooled features of ``x`` once more, with
        the same parameters and spectral-norm state as this forward (statistics not updated)
        and the parts' D-forward extras (:meth:`Part.d_forward`) drawn from ``key``.
      key: a PRNG key for the loss terms, independent of the forward's (fold in per use).
      x_real_clean: the real images ``[B, H, W, C]`` before the D-input augmentations (for a
        gradient penalty taken through them, as stylegan2-ada-pytorch's R1).
      augment: ``augment(key, x) -> x``, this step's D-input augmentations (identity when none
        is on), differentiable in ``x``.
      augment_real: ``augment_real(x) -> x`` ``[B, H, W, C]``: the augmentation this step's
        main D loss gave its reals, with the same random draws, as a function of the clean
        reals (``augment_real(x_real_clean) == x_real``), differentiable in ``x``.
    """

    logits_real: Array
    logits_fake: Array
    x_real: Array
    d_apply: Callable
    step: Array
    x: Array | None = None
    features: Array | None = None
    d_features: Callable | None = None
    key: Array | None = None
    x_real_clean: Array | None = None
    augment: Callable | None = None
    augment_real: Callable | None = None


@dataclasses.dataclass
class GContext:
    """What a loss term sees in the G step (inside G's loss, so differentiable in G).

    Attributes:
      logits_fake: D's logits ``[B]`` on the (augmented) fakes.
      step: G iterations done before this one (int32 scalar).
      x_fake: G's images ``[B, H, W, C]`` of this step, before the D-input augmentations.
      z: the latents ``[B, latent_dim]`` of ``x_fake``.
      y: their int32 labels ``[B]``, or None (unconditional).
      g_apply: ``g_apply(*args, **kwargs)`` = ``G.apply(variables, *args, **kwargs)`` with the
        current (masked) G parameters and G's statistics, which it never updates; pass
        ``method=`` for another generator method and ``rngs=`` for its PRNG streams (e.g.
        StyleGAN2's ``synthesis`` for path-length regularisation).
      key: a PRNG key for the loss terms, independent of the forward's (fold in per use).
    """

    logits_fake: Array
    step: Array
    x_fake: Array | None = None
    z: Array | None = None
    y: Array | None = None
    g_apply: Callable | None = None
    key: Array | None = None


class LossTerm(Part):
    """A regulariser added to D's and/or G's loss."""

    kind = "loss"

    def d_term(self, ctx: DContext, state: Pytree, hp: dict) -> tuple[Array, dict, Pytree]:
        """``(value added to D's loss, metrics, new state)``; default: nothing."""
        return 0.0, {}, state

    def g_term(self, ctx: GContext, state: Pytree, hp: dict) -> tuple[Array, dict, Pytree]:
        """``(value added to G's loss, metrics, new state)``; default: nothing."""
        return 0.0, {}, state

    def lazy_phase(self) -> str | None:
        """``"d"`` / ``"g"``: the term runs as its own optimizer step of that network.

        Lazy regularisation as stylegan2-ada-pytorch ``training/training_loop.py`` (lines
        197-208, 270-290): every :meth:`lazy_interval` G iterations, after the network's main
        update, one more Adam step on :meth:`phase_term` alone, with the network's Adam scaled
        to ``lr * c``, ``betas ** c``, ``c = k / (k + 1)`` for the main steps too
        (:mod:`jaxgan_lth.training.lazy_reg`). Then :meth:`d_term` / :meth:`g_term` add nothing.
        Default None: the term is part of the main loss.
        """
        return None

    def lazy_interval(self) -> int:
        """G iterations between the term's own steps (k) when :meth:`lazy_phase` is set."""
        return 1

    def phase_term(self, ctx, state: Pytree, hp: dict) -> tuple[Array, dict, Pytree]:
        """``(loss of the term's own step, metrics, new state)`` (:meth:`lazy_phase`).

        ``ctx`` is a :class:`DContext` (phase ``"d"``) or :class:`GContext` (``"g"``) built on
        the parameters after the main update; the logits / features fields are None.
        """
        return 0.0, {}, state


class LazyRegTerm(LossTerm):
    """A regulariser with ``interval`` and ``lazy`` keys that may run lazily (R1, path length).

    :meth:`lazy_phase` is :attr:`lazy_network` when ``lazy = "separate_step"`` (the default,
    stylegan2-ada-pytorch's separate regularisation phase) and ``interval > 1``; otherwise the
    term stays in the main loss (``"loss_gain"``: the penalty x interval). :meth:`lazy_interval`
    is ``interval``.
    """

    #: the network whose own step runs the term: ``"d"`` (R1) or ``"g"`` (path length).
    lazy_network = ""

    def lazy_phase(self) -> str | None:
        """:attr:`lazy_network`, or None when the term is part of the main loss."""
        separate = self.cfg.get("lazy", LAZY_MODES[0]) == "separate_step"
        return self.lazy_network if separate and int(self.cfg.interval) > 1 else None

    def lazy_interval(self) -> int:
        """``interval``: G iterations between the term's own steps."""
        return int(self.cfg.interval)
