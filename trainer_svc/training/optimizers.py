"""SageMaker's optimizer names → tf_keras optimizers with their hyperparameters."""

from __future__ import annotations

import tf_keras as keras

from trainer_svc.training.hyperparameters import Hyperparameters


def make_optimizer(hp: Hyperparameters) -> keras.optimizers.Optimizer:
    lr = hp.learning_rate
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
