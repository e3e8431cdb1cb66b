"""Keras 3.15's Adadelta (rule 'adadelta')."""
from .optimizer import Optimizer, base_arguments


class Adadelta(Optimizer):
    _HYPERPARAMETERS = ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())

    def _build_slots(self, var_list):
        self._accumulated_grads, self._accumulated_delta_vars = self.add_optimizer_variables(
            var_list, ["accumulated_grad", "accumulated_delta_var"])

    def _rule(self):
        return "adadelta"

    def _slots_of(self, index):
        return [self._accumulated_grads[index], self._accumulated_delta_vars[index]]

    def _scalars(self, t, lr):
        return {"learning_rate": lr, "rho": t(self.rho), "one_minus_rho": t(1 - self.rho), "epsilon": t(self.epsilon)}
