"""Keras 3.15's Nadam (rule 'nadam'). Its momentum-cache product ``u_product`` is a host scalar
variable (saved among the optimizer's variables, last, as Keras does) that advances once per
update step before the rule's scalars are computed."""
import numpy as np

from ..layers.base_layer import unique_name
from .adam import BetasOptimizer, bias_powers


class Nadam(BetasOptimizer):
    def _build_slots(self, var_list):
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        dtype = var_list[0].dtype if var_list else "float32"
        # Keras creates it unnamed, so it takes the next auto name: variable, variable_1, ...
        self._u_product = self._add_variable(np.array(1.0, dtype=dtype), unique_name("variable"))

    def _rule(self):
        return "nadam"

    def _slots_of(self, index):
        return [self._momentums[index], self._velocities[index]]

    def _scalars(self, t, lr):
        step = self._step_count()
        beta_1, decay, one, half = t(self.beta_1), t(0.96), t(1.0), t(0.5)
        u_t = beta_1 * (one - half * decay ** t(step + 1))
        u_t_1 = beta_1 * (one - half * decay ** t(step + 2))
        u_product_t = t(self._u_product.numpy()) * u_t
        u_product_t_1 = u_product_t * u_t_1
        self._u_product.assign(np.asarray(u_product_t))
        (beta_2_power,) = bias_powers(t, self, self.beta_2)
        return {
            "learning_rate": lr, "beta_1": beta_1, "one_minus_beta_1": t(1 - self.beta_1),
            "beta_2": t(self.beta_2), "one_minus_beta_2": t(1 - self.beta_2), "epsilon": t(self.epsilon),
            "u_t_1": u_t_1, "one_minus_u_product_t_1": one - u_product_t_1, "one_minus_u_t": one - u_t,
            "one_minus_u_product_t": one - u_product_t, "one_minus_beta_2_power": one - beta_2_power,
        }
