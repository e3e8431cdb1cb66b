"""Keras 3.15's Adam (optionally AMSGrad) and AdamW, which is Adam with a default weight decay
(rules 'adam', 'adam_amsgrad'; the decay runs before the rule, as in Keras)."""
import numpy as np

from .optimizer import Optimizer, base_arguments


def bias_powers(t, optimizer, *betas):
    """``beta ** (iterations + 1)`` in the variables' dtype, for each beta (Keras' torch order)."""
    step = t(optimizer._step_count() + 1)
    return [t(beta) ** step for beta in betas]


class BetasOptimizer(Optimizer):
    """Adamax's and Nadam's shared constructor: Keras gives both this exact signature."""

    _HYPERPARAMETERS = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None, name=None,
                 **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())


class Adam(Optimizer):
    _HYPERPARAMETERS = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())

    def _build_slots(self, var_list):
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        self._velocity_hats = self.add_optimizer_variables(var_list, "velocity_hat") if self.amsgrad else []

    def _rule(self):
        return "adam_amsgrad" if self.amsgrad else "adam"

    def _slots_of(self, index):
        slots = [self._momentums[index], self._velocities[index]]
        return slots + [self._velocity_hats[index]] if self.amsgrad else slots

    def _scalars(self, t, lr):
        beta_1_power, beta_2_power = bias_powers(t, self, self.beta_1, self.beta_2)
        return {
            "alpha": lr * np.sqrt(t(1) - beta_2_power) / (t(1) - beta_1_power),
            "beta_1": t(self.beta_1), "one_minus_beta_1": t(1 - self.beta_1),
            "beta_2": t(self.beta_2), "one_minus_beta_2": t(1 - self.beta_2),
            "epsilon": t(self.epsilon),
        }


class AdamW(Adam):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(**base_arguments(locals()), beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
