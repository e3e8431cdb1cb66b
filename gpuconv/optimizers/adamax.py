"""Keras 3.15's Adamax, Adam with the infinity norm (rule 'adamax')."""
from .adam import BetasOptimizer, bias_powers


class Adamax(BetasOptimizer):
    def _build_slots(self, var_list):
        self._m, self._u = self.add_optimizer_variables(var_list, ["momentum", "norm"])

    def _rule(self):
        return "adamax"

    def _slots_of(self, index):
        return [self._m[index], self._u[index]]

    def _scalars(self, t, lr):
        (beta_1_power,) = bias_powers(t, self, self.beta_1)
        return {"learning_rate": lr, "beta_1": t(self.beta_1), "one_minus_beta_1": t(1 - self.beta_1),
                "beta_2": t(self.beta_2), "epsilon": t(self.epsilon), "one_minus_beta_1_power": t(1) - beta_1_power}
