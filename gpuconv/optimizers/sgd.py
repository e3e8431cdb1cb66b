"""Keras 3.15's SGD: plain, with momentum, or Nesterov momentum (rules 'sgd', 'sgd_momentum',
'sgd_nesterov')."""
from .optimizer import Optimizer, base_arguments


class SGD(Optimizer):
    _HYPERPARAMETERS = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")

    def _build_slots(self, var_list):
        self.momentums = self.add_optimizer_variables(var_list, "momentum") if self.momentum != 0 else []

    def _rule(self):
        if self.momentum == 0:
            return "sgd"
        return "sgd_nesterov" if self.nesterov else "sgd_momentum"

    def _slots_of(self, index):
        return [self.momentums[index]] if self.momentums else []

    def _scalars(self, t, lr):
        scalars = {"learning_rate": lr}
        if self.momentum != 0:
            scalars["momentum"] = t(self.momentum)
        return scalars
