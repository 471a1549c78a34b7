"""SageMaker's optimizer names → tf_keras optimizers, and the learning-rate schedules of a phase."""

from __future__ import annotations

from typing import Any, TypeAlias

import tf_keras as keras

from trainer_svc.training.hyperparameters import Hyperparameters

# A float or a keras.optimizers.schedules.LearningRateSchedule (tf_keras is untyped).
LearningRate: TypeAlias = Any


def make_optimizer(hp: Hyperparameters, learning_rate: LearningRate | None = None) -> keras.optimizers.Optimizer:
    lr: Any = hp.learning_rate if learning_rate is None else learning_rate
    name = hp.canonical_optimizer
    if name == "adam":
        return keras.optimizers.Adam(lr, beta_1=hp.beta_1, beta_2=hp.beta_2, epsilon=hp.epsilon)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=hp.momentum)
    if name == "nesterov":
        return keras.optimizers.SGD(lr, momentum=hp.momentum, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr, rho=hp.rho, momentum=hp.momentum, epsilon=hp.epsilon)
    if name == "adagrad":
        return keras.optimizers.Adagrad(lr, initial_accumulator_value=hp.initial_accumulator_value, epsilon=hp.epsilon)
    if name == "adadelta":
        return keras.optimizers.Adadelta(lr, rho=hp.rho, epsilon=hp.epsilon)
    raise ValueError(f"unknown optimizer {name}")


def schedule(
    kind: str, base: float, epochs: int, steps_per_epoch: int, step_epochs: tuple[int, ...] = (), factor: float = 0.1
) -> LearningRate:
    """A phase's learning rate as a function of the optimizer's own step count (so resuming continues it).

    ``step``: MXNet's ``lr_scheduler_step``/``lr_scheduler_factor``, multiplied by ``factor`` at each listed
    epoch of the phase. ``cosine``: from ``base`` to zero over the phase.
    """
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=max(1, epochs * steps_per_epoch))
    if kind == "step" and step_epochs:
        boundaries = [e * steps_per_epoch for e in step_epochs]
        values = [base * factor**i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return base
