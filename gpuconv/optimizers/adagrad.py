"""Keras 3.15's Adagrad (rule 'adagrad'); its accumulators start at ``initial_accumulator_value``."""
from .optimizer import Optimizer, base_arguments


class Adagrad(Optimizer):
    _HYPERPARAMETERS = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None, name=None,
                 **kwargs):
        super().__init__(**base_arguments(locals()), **kwargs)
        self._keep(locals())

    def _build_slots(self, var_list):
        self._accumulators_of_squares = self.add_optimizer_variables(
            var_list, "accumulator", initial_value=self.initial_accumulator_value)

    def _rule(self):
        return "adagrad"

    def _slots_of(self, index):
        return [self._accumulators_of_squares[index]]

    def _scalars(self, t, lr):
        return {"learning_rate": lr, "epsilon": t(self.epsilon)}
