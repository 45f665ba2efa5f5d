"""Model registry: ``ModelPair``, ``register_model``, ``get_model``, ``available_models``.

Builders are registered by name and called as
``builder(*, resolution, channels, num_classes, **kwargs) -> ModelPair``; they validate their own
kwargs (see :func:`check_kwargs`) and raise ``ValueError`` for anything they do not support.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

Builder = Callable[..., "ModelPair"]

_REGISTRY: dict[str, Builder] = {}


class ModelPair(NamedTuple):
    """A generator / discriminator pair (unbound flax modules)."""

    generator: nn.Module
    discriminator: nn.Module


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(*, resolution, channels, num_classes, **kwargs)``.

    Args:
        name: registry name (e.g. ``"sngan"``).

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def available_models() -> list[str]:
    """Returns the sorted registered model names."""
    return sorted(_REGISTRY)


def get_model(
    name: str, *, resolution: int, channels: int, num_classes: int = 0, **kwargs: Any
) -> ModelPair:
    """Builds the generator / discriminator pair registered as ``name``.

    Args:
        name: one of :func:`available_models` (``"dcgan"``, ``"sngan"``, ``"biggan"``).
        resolution: image height = width.
        channels: image channels (1 = grayscale, 3 = RGB).
        num_classes: number of classes of the data set (used when the model is conditional).
        **kwargs: model options; every builder accepts ``latent_dim``, ``g_channels``,
            ``d_channels`` and ``conditional`` (bool), plus a few model-specific ones.

    Returns:
        ``ModelPair(generator, discriminator)``.

    Raises:
        ValueError: unknown ``name``, unknown kwargs, or unsupported / invalid values (the message
            names the bad value and what is accepted).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available models: {available_models()}")
    return _REGISTRY[name](
        resolution=resolution, channels=channels, num_classes=num_classes, **kwargs
    )


# ------------------------------------------------------------------------------------------------
# Validation helpers used by the builders
# ------------------------------------------------------------------------------------------------


def check_kwargs(model: str, kwargs: dict, accepted: Iterable[str]) -> None:
    """Raises ``ValueError`` if ``kwargs`` has keys outside ``accepted``."""
    accepted = sorted(accepted)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{model}: unknown keyword argument(s) {unknown}; accepted: {accepted}"
        )


def check_choice(model: str, what: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raises ``ValueError`` unless ``value`` is in ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{model} supports {what} in {allowed}, got {value!r}")


def check_positive_int(model: str, what: str, value: Any) -> int:
    """Returns ``int(value)``; raises ``ValueError`` unless it is a positive integer."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{model}: {what} must be a positive integer, got {value!r}")
    return int(value)


#: Compute dtypes of ``model.dtype`` (every model; parameters stay float32 either way).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_dtype(model: str, dtype: Any) -> Any:
    """The compute dtype named ``dtype`` (a key of :data:`COMPUTE_DTYPES`).

    Returns:
        ``jnp.float32`` or ``jnp.bfloat16``.

    Raises:
        ValueError: any other value, naming it and the accepted names.
    """
    if not isinstance(dtype, str) or dtype not in COMPUTE_DTYPES:
        raise ValueError(f"{model}: dtype = {dtype!r} is not accepted; accepted: "
                         f"{sorted(COMPUTE_DTYPES)} (the compute dtype; parameters stay float32)")
    return COMPUTE_DTYPES[dtype]


def check_conditional(model: str, conditional: Any, num_classes: Any) -> int:
    """Validates ``conditional`` / ``num_classes``; returns the model's ``num_classes``.

    Returns:
        ``int(num_classes)`` if ``conditional``, else 0 (unconditional).

    Raises:
        ValueError: ``conditional`` is not a bool, or it is True with ``num_classes < 1``.
    """
    if not isinstance(conditional, bool):
        raise ValueError(f"{model}: conditional must be a bool, got {conditional!r}")
    try:
        ok = not isinstance(num_classes, bool) and int(num_classes) == num_classes >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{model}: num_classes must be an integer >= 0, got {num_classes!r}")
    if conditional and num_classes < 1:
        raise ValueError(
            f"{model}: conditional=True needs num_classes >= 1 (the number of data-set classes), "
            f"got num_classes={num_classes!r}"
        )
    return int(num_classes) if conditional else 0
