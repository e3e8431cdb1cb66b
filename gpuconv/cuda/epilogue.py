"""The activations the CUDA kernels fuse into their epilogue, and the codes they take.

``ACTIVATION_CODES`` mirrors ``enum gc::Act`` in ``kernels/common.cuh`` (tests parse the header to
check the two agree). Kernels take the code as a run-time ``int`` argument, see common.cuh for why.
Aliases Keras accepts ('swish', 'hard_swish') map to the same code as their canonical names.

``FUSED_ACTIVATIONS``: the names ``gpuconv.ops`` may hand to the engine (engine contract).
``activation_code(name) -> int``: 0 for None/'linear', ValueError for a name we do not fuse.
Every kernel epilogue applies these in registers: the dense kernels through
``gc::activate_dispatch``, the memory-bound ones (depthwise, separable, locally connected) through
``gc::activate_set`` (the depthwise tile kernel, built for :data:`CHEAP_ACTIVATIONS` alone or for
every activation), ``gc::activate_inline`` or ``gc::activate_compact`` (one copy of each body); all are call-free
switches over ``gc::activate`` (common.cuh).
"""

ACTIVATION_CODES = {
    "linear": 0,
    "relu": 1,
    "relu6": 2,
    "leaky_relu": 3,
    "elu": 4,
    "selu": 5,
    "gelu": 6,
    "silu": 7,
    "sigmoid": 8,
    "tanh": 9,
    "softplus": 10,
    "softsign": 11,
    "hard_sigmoid": 12,
    "hard_silu": 13,
    "exponential": 14,
    "mish": 15,
    "celu": 16,
    "squareplus": 17,
    "sparse_plus": 18,
    "soft_shrink": 19,
    "hard_shrink": 20,
    "tanh_shrink": 21,
    "hard_tanh": 22,
    "log_sigmoid": 23,
    "sparse_sigmoid": 24,
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

FUSED_ACTIVATIONS = frozenset(set(ACTIVATION_CODES) - {"linear"} | set(ALIASES))

# The activations common.cuh ``is_cheap_activation`` names: a depthwise tile kernel built for
# these alone (``ACTS_CHEAP``) compiles none of the other bodies.
CHEAP_ACTIVATIONS = frozenset({"linear", "relu", "relu6", "leaky_relu"})
# common.cuh ``enum ActivationSet``: the activations a kernel's epilogue is compiled for.
ACTS_CHEAP, ACTS_ANY = 0, 1


def activation_set(name):
    """``ACTS_CHEAP`` when activation ``name`` (None: none) is one of :data:`CHEAP_ACTIVATIONS`,
    else ``ACTS_ANY``."""
    return ACTS_CHEAP if name is None or ALIASES.get(name, name) in CHEAP_ACTIVATIONS else ACTS_ANY


def activation_code(name):
    if name is None:
        return 0
    canonical = ALIASES.get(name, name)
    try:
        return ACTIVATION_CODES[canonical]
    except KeyError:
        raise ValueError(
            f"Activation {name!r} cannot be fused by the CUDA engine; fused ones: {sorted(FUSED_ACTIVATIONS)}"
        ) from None
