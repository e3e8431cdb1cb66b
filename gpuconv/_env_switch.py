"""An on/off environment variable, read the same way for every gpuconv switch."""
_ON = frozenset({"", "1", "on", "true", "yes"})
_OFF = frozenset({"0", "off", "false", "no"})


def switch(name, raw):
    """True / False for the value ``raw`` of the environment variable ``name`` (unset or empty:
    on); a ValueError naming the variable and the value for anything else."""
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"The environment variable {name} must be one of 1/on/true/yes or 0/off/false/no. "
                     f"Received: {name}={raw!r}")
