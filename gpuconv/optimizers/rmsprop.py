"""Keras 3.15's RMSprop, plain, centered and/or with momentum (rules 'rmsprop',
'rmsprop_momentum', 'rmsprop_centered', 'rmsprop_centered_momentum')."""
from .optimizer import Optimizer, base_arguments


class RMSprop(Optimizer):
    _HYPERPARAMETERS = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None, name=None,
                 **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())

    def _build_slots(self, var_list):
        self._velocities = self.add_optimizer_variables(var_list, "velocity")
        self._momentums = self.add_optimizer_variables(var_list, "momentum") if self.momentum > 0 else []
        self._average_gradients = self.add_optimizer_variables(var_list, "average_gradient") if self.centered else []

    def _rule(self):
        return "rmsprop" + ("_centered" if self.centered else "") + ("_momentum" if self.momentum > 0 else "")

    def _slots_of(self, index):
        slots = [self._velocities[index]]
        if self.momentum > 0:
            slots.append(self._momentums[index])
        if self.centered:
            slots.append(self._average_gradients[index])
        return slots

    def _scalars(self, t, lr):
        scalars = {"learning_rate": lr, "rho": t(self.rho), "one_minus_rho": t(1 - self.rho),
                   "epsilon": t(self.epsilon)}
        if self.momentum > 0:
            scalars["momentum"] = t(self.momentum)
        return scalars
