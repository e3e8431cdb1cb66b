"""``GradientTape`` (TensorFlow's eager semantics) and the recording API the ops call.

Why it exists: gpuconv computes eagerly on plain NumPy / CuPy / emulator arrays, which carry no
graph. The tape keeps one: every array it watches, or that a recorded op derived from a watched
one, gets a node; every recorded op is a record (input nodes, output nodes, a ``backward``
closure). ``gradient`` walks the records in reverse, once, in a fixed order (deterministic).

Arrays are identified by ``id()``. A tape holds a reference to each array it has a node for, so
an id cannot be reused while the tape lives; the references go with the records (after the one
``gradient`` of a non-persistent tape, on ``reset``, or when the tape is deleted). An op may
return its input itself (``astype(copy=False)``): each recorded output gets a NEW node, and an
input resolves to the node its id has when the op is recorded, so the graph never has a cycle.

The backward closures run with recording paused, so a backward that calls recorded functions
records nothing (higher-order gradients are not supported).
"""
import threading

import numpy as np

from .. import arrays as _arrays
from .. import dtypes as _dtypes

__all__ = ["GradientTape", "recording", "record", "record_identity", "stop_recording", "input_needed"]

_local = threading.local()

_UNCONNECTED = ("none", "zero")


def _active():
    """The tapes recording in this thread (innermost last), or () when paused / none."""
    tapes = getattr(_local, "tapes", None)
    if not tapes or getattr(_local, "paused", 0):
        return ()
    return tapes


def _is_variable(x):
    from ..variables import Variable

    return isinstance(x, Variable)


def _is_array(x):
    return isinstance(x, np.ndarray) or _arrays.is_cupy_array(x)


def _flatten(structure, out):
    """Leaves of a nested list / tuple / dict (dicts in key order as given), into ``out``."""
    if isinstance(structure, dict):
        for value in structure.values():
            _flatten(value, out)
    elif isinstance(structure, (list, tuple)):
        for value in structure:
            _flatten(value, out)
    else:
        out.append(structure)
    return out


def _pack(structure, leaves):
    """``structure`` with its leaves replaced, in ``_flatten`` order, from the iterator ``leaves``."""
    if isinstance(structure, dict):
        return type(structure)((key, _pack(value, leaves)) for key, value in structure.items())
    if isinstance(structure, tuple):
        packed = [_pack(value, leaves) for value in structure]
        return type(structure)(*packed) if hasattr(structure, "_fields") else tuple(packed)
    if isinstance(structure, list):
        return [_pack(value, leaves) for value in structure]
    return next(leaves)


def _move(g, like_xp):
    """``g`` in the array module ``like_xp`` (NumPy, CuPy or the emulator's xp)."""
    if _arrays.array_module(g) is like_xp:
        return g
    host = _arrays.to_numpy(g)
    return host if like_xp is np else like_xp.asarray(host)


def _accumulate(total, g):
    """total + g; 16-bit float sums are formed in float32 (cast once, where the gradient is used)."""
    if total is None:
        return g
    g = _move(g, _arrays.array_module(total))
    if _dtypes.is_16bit_float(total.dtype) or _dtypes.is_16bit_float(g.dtype):
        work = np.result_type(total.dtype, g.dtype, np.float32)
        return total.astype(work, copy=False) + g.astype(work, copy=False)
    return total + g


def _as(g, xp, dtype, shape):
    g = _move(g, xp)
    if g.dtype != dtype:
        g = g.astype(dtype)
    if tuple(g.shape) != tuple(shape):
        g = xp.broadcast_to(g, shape) if g.ndim == 0 else g.reshape(shape)
    return xp.ascontiguousarray(g)  # engines take C-contiguous arrays (a broadcast view is not)


class _Record:
    __slots__ = ("inputs", "outputs", "out_meta", "backward")

    def __init__(self, inputs, outputs, out_meta, backward):
        self.inputs = inputs        # node per input (None: not connected on this tape)
        self.outputs = outputs      # node per output
        self.out_meta = out_meta    # (xp, shape, dtype) per output, for zero gradients
        self.backward = backward


class GradientTape:
    """Records the recorded ops run inside ``with GradientTape() as tape:`` for ``tape.gradient``.

    Trainable ``gpuconv.variables.Variable`` values read inside the block are watched
    automatically (``watch_accessed_variables=True``); arrays and non-trainable variables need
    ``tape.watch``. Only gpuconv's recorded functions (``gpuconv.ops``, the layers, the
    activations) are recorded: plain NumPy / CuPy operators are invisible to the tape.
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = bool(persistent)
        self._watch_accessed_variables = bool(watch_accessed_variables)
        self._used = False
        self._clear()

    def _clear(self):
        self._node = {}          # id(array) -> its current node
        self._held = {}          # id(array) -> the array (keeps the id valid)
        self._watch_node = {}    # id(watched array) -> the node it had when watched
        self._records = []
        self._n_nodes = 0
        self._watched_vars = {}  # id(var) -> var (tape.watch(var))
        self._var_nodes = {}     # id(var) -> [leaf nodes of the arrays its reads returned]
        self._leaf_var = {}      # leaf node -> id(var)
        self._vars = {}          # id(var) -> var

    # ---- context ---------------------------------------------------------------------------
    def __enter__(self):
        tapes = getattr(_local, "tapes", None)
        if tapes is None:
            tapes = _local.tapes = []
        tapes.append(self)
        return self

    def __exit__(self, *exc):
        tapes = _local.tapes
        # Usually the last one; a tape exited out of order is removed where it is.
        for i in range(len(tapes) - 1, -1, -1):
            if tapes[i] is self:
                del tapes[i]
                break
        return False

    def stop_recording(self):
        """A context in which nothing is recorded on any tape of this thread (TF's stop_recording)."""
        return stop_recording()

    def reset(self):
        """Forget everything recorded and watched (TF's ``reset``)."""
        self._clear()
        self._used = False

    # ---- nodes -----------------------------------------------------------------------------
    def _new_node(self, array):
        node = self._n_nodes
        self._n_nodes += 1
        self._node[id(array)] = node
        self._held[id(array)] = array
        return node

    def _accepts_records(self):
        return self._persistent or not self._used

    # ---- watching --------------------------------------------------------------------------
    def watch(self, tensor):
        """Watch an array (NumPy, CuPy, emulator), a Variable, or a list / tuple / dict of them."""
        for leaf in _flatten(tensor, []):
            if _is_variable(leaf):
                self._watched_vars[id(leaf)] = leaf
                self._vars[id(leaf)] = leaf
            elif _is_array(leaf):
                if id(leaf) not in self._watch_node:
                    node = self._node.get(id(leaf))
                    if node is None:
                        node = self._new_node(leaf)
                    self._watch_node[id(leaf)] = node
            else:
                raise TypeError(
                    "GradientTape.watch expects arrays (NumPy, CuPy, cuda-emulator), gpuconv Variables, "
                    f"or lists / tuples / dicts of them. Received: tensor of type {type(leaf).__name__}"
                )

    def watched_variables(self):
        return list(self._vars.values())

    def _wants(self, var):
        return (self._watch_accessed_variables and var.trainable) or id(var) in self._watched_vars

    def _link_variable(self, var, array):
        node = self._node.get(id(array))
        if node is not None and self._leaf_var.get(node) == id(var):
            return  # the same cached array read again: already this variable's leaf
        node = self._new_node(array)
        self._leaf_var[node] = id(var)
        self._var_nodes.setdefault(id(var), []).append(node)
        self._vars[id(var)] = var

    # ---- recording -------------------------------------------------------------------------
    def _tracks(self, arrays):
        node = self._node
        return any(a is not None and id(a) in node for a in arrays)

    def _record(self, inputs, outputs, backward):
        in_nodes = tuple(None if a is None else self._node.get(id(a)) for a in inputs)
        for a in inputs:  # keep every input alive too: its id stays valid while the tape lives
            if a is not None and id(a) in self._node:
                self._held[id(a)] = a
        meta = tuple((_arrays.array_module(y), tuple(y.shape), y.dtype) for y in outputs)
        out_nodes = tuple(self._new_node(y) for y in outputs)
        self._records.append(_Record(in_nodes, out_nodes, meta, backward))

    # ---- gradients -------------------------------------------------------------------------
    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """d(sum of ``target``)/d``sources``, in ``sources``' structure (TF's ``gradient``)."""
        unconnected = getattr(unconnected_gradients, "value", unconnected_gradients)  # a TF-like enum
        if unconnected not in _UNCONNECTED:
            raise ValueError(
                f"Argument `unconnected_gradients` must be 'none' or 'zero'. "
                f"Received: unconnected_gradients={unconnected_gradients!r}"
            )
        if self._used and not self._persistent:
            raise RuntimeError(
                "A non-persistent GradientTape can only be used to compute one set of gradients (or jacobians)"
            )
        self._used = True
        try:
            return self._gradient(target, sources, output_gradients, unconnected)
        finally:
            if not self._persistent:
                self._clear()

    def _target_nodes(self, targets):
        nodes = []
        for t in targets:
            node = self._node.get(id(t)) if _is_array(t) else None
            if node is None:
                what = (f"an array of shape {tuple(t.shape)} and dtype {t.dtype}" if hasattr(t, "shape")
                        else f"a {type(t).__name__}")
                raise ValueError(
                    f"GradientTape.gradient: the target ({what}) was not produced by any operation recorded "
                    "on this tape, and it is not a watched source. Arithmetic written with plain NumPy/CuPy "
                    "operators (x + y, x * y, x.sum(), np.mean(x), ...) is not recorded: compute the target "
                    "inside the `with GradientTape()` block with gpuconv's recorded functions "
                    "(gpuconv.ops.add, gpuconv.ops.multiply, gpuconv.ops.mean, gpuconv.ops.sum, ...), "
                    "gpuconv layers and activations, from watched arrays (tape.watch) or trainable variables."
                )
            nodes.append(node)
        return nodes

    def _gradient(self, target, sources, output_gradients, unconnected):
        targets = _flatten(target, [])
        target_nodes = self._target_nodes(targets)
        seeds = _flatten(output_gradients, []) if output_gradients is not None else [None] * len(targets)
        if len(seeds) != len(targets):
            raise ValueError(
                f"Argument `output_gradients` must have one gradient per target: {len(targets)} target(s), "
                f"received {len(seeds)}."
            )
        leaves = _flatten(sources, [])
        # Source nodes: a variable's leaves, a watched array's node when watched, else the array's
        # current node (an intermediate result), else nothing (unconnected).
        source_nodes = []
        for s in leaves:
            if _is_variable(s):
                source_nodes.append(list(self._var_nodes.get(id(s), ())))
            elif _is_array(s):
                node = self._watch_node.get(id(s), self._node.get(id(s)))
                source_nodes.append([] if node is None else [node])
            else:
                raise TypeError(
                    "GradientTape.gradient: `sources` must hold arrays or Variables. "
                    f"Received a source of type {type(s).__name__}"
                )
        # Nodes from which a source is reachable going backward = forward-reachable from sources.
        wanted = {n for nodes in source_nodes for n in nodes}
        relevant = set(wanted)
        live = []
        for rec in self._records:
            if any(n is not None and n in relevant for n in rec.inputs):
                relevant.update(rec.outputs)
                live.append(rec)
        grads = {}
        pause = getattr(_local, "paused", 0)
        _local.paused = pause + 1
        try:
            for t, node, seed in zip(targets, target_nodes, seeds):
                if seed is None:
                    g = _arrays.array_module(t).ones(t.shape, dtype=t.dtype)
                else:
                    g = _as(seed, _arrays.array_module(t), t.dtype, t.shape)
                grads[node] = _accumulate(grads.get(node), g)
            for rec in reversed(live):
                if not any(n in grads for n in rec.outputs):
                    continue
                out_grads = []
                for n, (xp, shape, dtype) in zip(rec.outputs, rec.out_meta):
                    g = grads.pop(n, None)
                    out_grads.append(xp.zeros(shape, dtype=dtype) if g is None else _as(g, xp, dtype, shape))
                _local.needed = tuple(n is not None and n in relevant for n in rec.inputs)
                try:
                    in_grads = rec.backward(*out_grads)
                finally:
                    _local.needed = None
                if not self._persistent:
                    rec.backward = None  # its saved arrays go now, not at the end
                if len(in_grads) != len(rec.inputs):
                    raise RuntimeError(
                        f"A recorded backward returned {len(in_grads)} gradient(s) for {len(rec.inputs)} input(s)."
                    )
                for n, g in zip(rec.inputs, in_grads):
                    if n is not None and g is not None and n in relevant:
                        grads[n] = _accumulate(grads.get(n), g)
        finally:
            _local.paused = pause
        results = []
        for s, nodes in zip(leaves, source_nodes):
            total = None
            for n in nodes:
                if n in grads:
                    total = _accumulate(total, grads[n])
            if _is_variable(s):
                ref = s.value if total is None else total
                xp, shape, dtype = _arrays.array_module(ref), s.shape, np.dtype(s.dtype)
            else:
                xp, shape, dtype = _arrays.array_module(s), s.shape, s.dtype
            if total is None:
                results.append(xp.zeros(shape, dtype=dtype) if unconnected == "zero" else None)
            else:
                results.append(_as(total, xp, dtype, shape))
        return _pack(sources, iter(results))


class stop_recording:
    """``with stop_recording():`` nothing is recorded on this thread's tapes inside."""

    def __enter__(self):
        _local.paused = getattr(_local, "paused", 0) + 1
        return self

    def __exit__(self, *exc):
        _local.paused -= 1
        return False


# --------------------------------------------------------------------------------------------
# The recording API (called by gpuconv.ops, the layers, the activations, the variables)
# --------------------------------------------------------------------------------------------
def recording(*arrays):
    """Whether any active tape has a node for any of ``arrays`` (None entries ignored)."""
    tapes = _active()
    if not tapes:
        return False
    return any(t._accepts_records() and t._tracks(arrays) for t in tapes)


def record(inputs, outputs, backward):
    """Record ``outputs = f(*inputs)`` with ``backward(*output_grads) -> one gradient per input``
    on every active tape that has a node for one of ``inputs``."""
    tapes = _active()
    if not tapes:
        return
    inputs = tuple(inputs) if inputs is not None else ()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for t in tapes:
        if t._accepts_records() and t._tracks(inputs):
            t._record(inputs, outputs, backward)


def record_identity(source, result):
    """``result`` is ``source`` on another device and/or in another dtype: the gradient passes
    back moved to ``source``'s array module and cast to its dtype."""
    if result is source or not recording(source):
        return
    xp, dtype = _arrays.array_module(source), source.dtype

    def backward(g):
        g = _move(g, xp)
        return (g if g.dtype == dtype else g.astype(dtype),)

    record((source,), result, backward)


def input_needed(index):
    """Inside a recorded backward: whether the gradient of its input ``index`` leads to a source
    of the ``gradient()`` call (a backward may skip the others, e.g. a first convolution's input
    gradient, or a frozen kernel's). Outside one: True."""
    needed = getattr(_local, "needed", None)
    return True if needed is None else needed[index]


def variable_read(var, array):
    """Called by ``Variable`` on a read: link ``array`` to ``var`` on the tapes that watch it."""
    for t in _active():
        if t._accepts_records() and t._wants(var):
            t._link_variable(var, array)
