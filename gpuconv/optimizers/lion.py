"""Keras 3.15's Lion, the sign of an interpolated momentum (rule 'lion')."""
from .optimizer import Optimizer, base_arguments


class Lion(Optimizer):
    _HYPERPARAMETERS = ("beta_1", "beta_2")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(
                "Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates to SignSGD. "
                f"Received: beta_1={beta_1}."
            )

    def _build_slots(self, var_list):
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _rule(self):
        return "lion"

    def _slots_of(self, index):
        return [self._momentums[index]]

    def _scalars(self, t, lr):
        return {"learning_rate": lr, "beta_1": t(self.beta_1), "one_minus_beta_1": t(1 - self.beta_1),
                "beta_2": t(self.beta_2), "one_minus_beta_2": t(1 - self.beta_2)}
