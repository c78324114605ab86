"""Git Re-Basin (Ainsworth, Hayase & Srinivasa, ICLR 2023): permute the hidden units of network B so
that it lies in network A's basin, without changing the function B computes.

The hidden units of a feed-forward network can be renamed: permute a layer's outputs (its weight
rows, its bias, the BatchNorm after it) and the next layer's inputs the same way, and the network
computes the same function from another point of weight space. Networks trained from different
seeds differ by such a renaming as well as by real differences; undoing the renaming first makes
their weights comparable (distances, interpolation paths, a shared manifold).

* :func:`permutation_spec` reads from the model itself which arrays each permutation reorders.
* :func:`weight_matching` and :func:`activation_matching` find the permutations.
* :func:`apply_permutation` and :func:`permute_trajectory` apply them; :func:`rebasin` does it
  all and checks that the permuted network computes B's function.

Convention: ``perm[i]`` is the unit of B that becomes unit ``i``, i.e. permuted B is ``B[perm]``
along every axis of the group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from globscope.errors import GlobscopeError
from globscope.layout import ParameterLayout

__all__ = ["Axis", "PermutationGroup", "PermutationSpec", "RebasinResult", "permutation_spec", "weight_matching",
           "activation_matching", "apply_permutation", "permute_trajectory", "max_output_difference", "rebasin"]

_WEIGHT = (nn.Linear, nn.Conv2d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_POOL = (nn.MaxPool2d, nn.AvgPool2d)
_ELEMENTWISE = (nn.ReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.SiLU, nn.Softplus,
                nn.Identity, nn.Dropout)
_BN_ARRAYS = ("weight", "bias", "running_mean", "running_var")  # num_batches_tracked is per layer


class Axis(NamedTuple):
    """One axis a permutation reorders: axis ``axis`` of the state-dict array ``key``, where each
    unit is a contiguous block of ``block`` entries (H*W input columns of a Linear after a
    channel-major Flatten; 1 otherwise)."""

    key: str
    axis: int
    block: int = 1


@dataclass(frozen=True)
class PermutationGroup:
    """The hidden units of one weight layer.

    Attributes
    ----------
    name : str
        ``"P_<layer>"``.
    layer : str
        The Linear/Conv2d whose outputs the units are (its name in the model).
    size : int
        Number of units (``out_features`` or ``out_channels``).
    axes : tuple of Axis
        Every state-dict array the permutation reorders.
    activation : str
        The module whose output is the units' activation: the last BatchNorm or element-wise
        module after the layer, before any pooling, Flatten or weight layer.
    """

    name: str
    layer: str
    size: int
    axes: tuple[Axis, ...]
    activation: str


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation groups of a model, ``groups[name]``, in layer order."""

    groups: dict[str, PermutationGroup] = field(default_factory=dict)

    def axes_of(self, key: str) -> list[tuple[str, Axis]]:
        """``(group name, Axis)`` for every permutation that reorders the array ``key``."""
        return [(g.name, a) for g in self.groups.values() for a in g.axes if a.key == key]

    @property
    def keys(self) -> list[str]:
        """The state-dict keys some permutation reorders."""
        return list(dict.fromkeys(a.key for g in self.groups.values() for a in g.axes))


@dataclass
class RebasinResult:
    """What :func:`rebasin` returns.

    Attributes
    ----------
    state : dict of str to Tensor
        B's state dict with its hidden units permuted (buffers included).
    perms : dict of str to ndarray of int, each of shape (group size,)
    max_output_diff : float
        max |logits(B) - logits(permuted B)| on the data, eval mode.
    distance_before, distance_after : float
        L2 distance of the flat trainable-parameter vectors, ||A - B|| and ||A - permuted B||.
    """

    state: dict[str, torch.Tensor]
    perms: dict[str, np.ndarray]
    max_output_diff: float
    distance_before: float
    distance_after: float


def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The modules a Sequential runs, in order; nested Sequentials are opened (their forward is the
    composition of their children)."""
    if not isinstance(module, nn.Sequential) or type(module).forward is not nn.Sequential.forward:
        where = f"module {prefix.rstrip('.')!r}" if prefix else "the model"
        raise GlobscopeError(f"re-basin: cannot permute {where} ({type(module).__name__}): "
                             "only an nn.Sequential (without a forward of its own) can be permuted")
    out = []
    for name, child in module._modules.items():
        if isinstance(child, nn.Sequential):
            out += _leaves(child, f"{prefix}{name}.")
        elif child is not None:
            out.append((prefix + name, child))
    return out


def _run(leaves, x, record=None):
    """Run the leaves in order on ``x``; ``record(name, input, output)`` sees every step."""
    for name, m in leaves:
        y = m(x)
        if record is not None:
            record(name, x, y)
        x = y
    return x


def permutation_spec(model: nn.Module, example_input: torch.Tensor) -> PermutationSpec:
    """Which arrays each hidden layer's permutation reorders, read from ``model``.

    One group per Linear/Conv2d except the last: its weight's axis 0 and bias, the weight, bias,
    running mean and variance of the BatchNorms after it, and the next weight layer's axis 1 (each
    channel a block of H*W columns when a Flatten comes between a conv block and a Linear).

    Parameters
    ----------
    model : nn.Sequential
        Of Flatten, Linear, Conv2d (groups=1), BatchNorm1d/2d, MaxPool2d/AvgPool2d, element-wise
        activations, Identity and Dropout (nested Sequentials are opened).
    example_input : Tensor of shape (1, ...)
        One input of the task's shape: a forward pass gives the H*W a Flatten folds into each
        channel, so the spec fits whatever the image size.

    Raises
    ------
    GlobscopeError
        Naming the module and its type, for a model that cannot be permuted this way.
    """
    leaves = _leaves(model)
    for name, m in leaves:  # before running it: an unknown module may not even take one tensor
        if not isinstance(m, _WEIGHT + _BATCHNORM + _POOL + _ELEMENTWISE + (nn.Flatten,)):
            raise GlobscopeError(f"re-basin: cannot permute module {name!r} ({type(m).__name__}): not a module "
                                 "re-basin can permute (residual blocks, attention and custom modules mix "
                                 "units in ways a Sequential spec cannot see)")
    shapes: dict[str, tuple[int, ...]] = {}
    was_training = model.training
    model.eval()  # BatchNorm1d refuses a batch of one in training mode
    try:
        with torch.no_grad():
            _run(leaves, example_input, lambda name, x, y: shapes.__setitem__(name, tuple(x.shape)))
    except Exception as e:  # noqa: BLE001 - the model does not run on this input: say where
        raise GlobscopeError(f"re-basin: the model does not run on an input of shape "
                             f"{tuple(example_input.shape)} ({type(e).__name__}: {e})") from e
    finally:
        model.train(was_training)

    groups: dict[str, PermutationGroup] = {}
    cur: dict | None = None  # the group of the last weight layer, still collecting axes
    block = 1  # entries per unit along the feature axis
    chain = False  # still in the element-wise chain right after the weight layer
    stateful: set[int] = set()
    for name, m in leaves:
        shape = shapes[name]

        def fail(why, name=name, m=m):
            raise GlobscopeError(f"re-basin: cannot permute module {name!r} ({type(m).__name__}): {why}")

        if m.state_dict():
            if id(m) in stateful:
                fail("it appears twice in the model (shared weights)")
            stateful.add(id(m))
        if isinstance(m, _WEIGHT):
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                fail(f"grouped convolution (groups={m.groups})")
            if len(shape) != (2 if isinstance(m, nn.Linear) else 4):
                fail(f"its input has shape {shape}; a Linear needs (N, F), a Conv2d (N, C, H, W)")
            if cur is not None:
                cur["axes"] = (*cur["axes"], Axis(f"{name}.weight", 1, block))
                groups[cur["name"]] = PermutationGroup(**cur)
            axes = [Axis(f"{name}.weight", 0)] + ([Axis(f"{name}.bias", 0)] if m.bias is not None else [])
            cur = dict(name=f"P_{name}", layer=name, size=m.weight.shape[0], axes=axes, activation=name)
            block, chain = 1, True
        elif isinstance(m, _BATCHNORM):
            if cur is None:
                fail("a BatchNorm before any weight layer")
            cur["axes"] += [Axis(f"{name}.{k}", 0, block) for k in _BN_ARRAYS if getattr(m, k, None) is not None]
            if chain:
                cur["activation"] = name
        elif isinstance(m, _ELEMENTWISE):
            if chain:
                cur["activation"] = name
        elif isinstance(m, _POOL):
            if cur is not None and block != 1:
                fail("pooling after a Flatten mixes units")
            chain = False
        else:  # Flatten
            if cur is not None and len(shape) > 2:
                if (m.start_dim, m.end_dim) != (1, -1):
                    fail("only Flatten(start_dim=1, end_dim=-1) keeps each channel a block of columns")
                block *= int(np.prod(shape[2:]))  # channel-major: channel c -> columns [c*HW, (c+1)*HW)
            chain = False
    # the last weight layer's outputs are the network's outputs: not permutable
    return PermutationSpec(groups)


def _expand(perm: np.ndarray, block: int) -> np.ndarray:
    """Indices of a permutation of units, each a block of ``block`` contiguous entries."""
    return (np.asarray(perm)[:, None] * block + np.arange(block)).ravel()


def _take(x, perm, ax: Axis):
    idx = _expand(perm, ax.block)
    if isinstance(x, torch.Tensor):
        return x.index_select(ax.axis, torch.from_numpy(idx).to(x.device))
    return np.take(x, idx, axis=ax.axis)


def _permuted(spec: PermutationSpec, key: str, x, perms, skip: str | None = None):
    """``x`` (the array ``key``) with every group's permutation applied but ``skip``'s."""
    for g, ax in spec.axes_of(key):
        if g != skip:
            x = _take(x, perms[g], ax)
    return x


def _check_perms(spec: PermutationSpec, perms) -> None:
    for g in spec.groups.values():
        p = perms.get(g.name)
        if p is None or not np.array_equal(np.sort(np.asarray(p)), np.arange(g.size)):
            raise GlobscopeError(f"re-basin: perms[{g.name!r}] is not a permutation of {g.size} units")


def weight_matching(spec: PermutationSpec, params_a: Mapping, params_b: Mapping, max_iter: int = 100,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Permutations of B that maximise the summed inner products <A, permuted B>.

    Coordinate descent over the groups: each step solves one group's linear assignment with the
    other groups held fixed. Maximising the inner products of the arrays used is minimising their
    L2 distance ||A - permuted B||.

    Parameters
    ----------
    spec : PermutationSpec
    params_a, params_b : mapping of str to Tensor or ndarray
        The arrays to match; spec keys absent from both (e.g. BatchNorm buffers) are left out.
    max_iter : int
        Passes over the groups at most; it stops earlier when a full pass improves nothing.
    seed : int
        The order in which each pass visits the groups (deterministic for a seed).

    Returns
    -------
    dict of str to ndarray of int, each of shape (group size,)
    """
    keys = [k for k in spec.keys if k in params_a or k in params_b]
    missing = [k for k in keys if k not in params_a or k not in params_b]
    if missing:
        raise GlobscopeError(f"weight matching: {missing[0]!r} is in only one of the two parameter sets")

    def as_array(v):
        return v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)

    a = {k: as_array(params_a[k]) for k in keys}
    b = {k: as_array(params_b[k]) for k in keys}
    perms = {g: np.arange(grp.size) for g, grp in spec.groups.items()}
    rng = np.random.default_rng(seed)
    names = list(spec.groups)
    for _ in range(max_iter):
        progress = False
        for g in rng.permutation(names):
            n = spec.groups[g].size
            cost = np.zeros((n, n))  # cost[i, j] = <unit i of A, unit j of B> over the group's arrays
            for ax in spec.groups[g].axes:
                if ax.key in a:
                    wa = np.moveaxis(a[ax.key], ax.axis, 0).reshape(n, -1)
                    wb = np.moveaxis(_permuted(spec, ax.key, b[ax.key], perms, skip=g), ax.axis, 0).reshape(n, -1)
                    cost += wa @ wb.T
            _, new = linear_sum_assignment(cost, maximize=True)
            old_score, new_score = cost[np.arange(n), perms[g]].sum(), cost[np.arange(n), new].sum()
            # a tie is no progress (summation order alone can change the last bits)
            if new_score > old_score + 1e-12 * max(1.0, abs(old_score)):
                perms[g], progress = new, True
        if not progress:
            break
    return perms


def _load(model_factory: Callable[[], nn.Module], state: Mapping) -> nn.Module:
    model = model_factory()
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise GlobscopeError(f"re-basin: the state dict does not fit the model ({e})") from None
    return model.eval()


def activation_matching(spec: PermutationSpec, model_factory: Callable[[], nn.Module], state_a: Mapping,
                        state_b: Mapping, x: torch.Tensor, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Permutations of B that maximise the summed correlations of matched units' activations on ``x``.

    Each group's activation is taken after the layer's nonlinearity (:attr:`PermutationGroup.activation`)
    in eval mode. For a conv group, every spatial position counts as one more observation of the
    channel (positions are flattened, not averaged): a channel is the same unit at every position,
    and averaging would throw away *where* it fires, which is what tells similar channels apart.
    The groups are matched independently (a unit's activation does not depend on how the units of
    other layers are ordered), each by one linear assignment on the Pearson correlations; no
    randomness is involved. Units constant on ``x`` (dead ReLUs) correlate with nothing, so their
    order among themselves is arbitrary (the function is kept all the same).

    Parameters
    ----------
    spec : PermutationSpec
    model_factory : callable () -> nn.Module
    state_a, state_b : mapping of str to Tensor
    x : Tensor of shape (N, ...)
    batch_size : int
        Examples per forward pass; the statistics are accumulated over batches.

    Returns
    -------
    dict of str to ndarray of int, each of shape (group size,)
    """
    leaves_a, leaves_b = _leaves(_load(model_factory, state_a)), _leaves(_load(model_factory, state_b))
    group_of = {g.activation: g.name for g in spec.groups.values()}
    sums: dict[str, dict[str, np.ndarray | float]] = {}
    for start in range(0, len(x), batch_size):
        acts = ({}, {})
        for leaves, out in zip((leaves_a, leaves_b), acts):
            def keep(name, inp, y, out=out):
                if name in group_of:  # units last, one row per example (and position)
                    out[group_of[name]] = y.movedim(1, -1).reshape(-1, y.shape[1]).double().numpy()
            with torch.no_grad():
                _run(leaves, x[start:start + batch_size], keep)
        for g, ua in acts[0].items():
            ub, s = acts[1][g], sums.setdefault(g, dict(m=0, a=0, b=0, aa=0, bb=0, ab=0))
            s["m"] += len(ua)
            s["a"], s["b"] = s["a"] + ua.sum(0), s["b"] + ub.sum(0)
            s["aa"], s["bb"] = s["aa"] + (ua * ua).sum(0), s["bb"] + (ub * ub).sum(0)
            s["ab"] = s["ab"] + ua.T @ ub
    perms = {}
    for g, s in sums.items():
        mean_a, mean_b = s["a"] / s["m"], s["b"] / s["m"]
        std_a = np.sqrt(np.maximum(s["aa"] / s["m"] - mean_a ** 2, 0))
        std_b = np.sqrt(np.maximum(s["bb"] / s["m"] - mean_b ** 2, 0))
        cov = s["ab"] / s["m"] - np.outer(mean_a, mean_b)
        corr = cov / (np.outer(std_a, std_b) + 1e-12)  # a dead unit correlates with nothing
        perms[g] = linear_sum_assignment(corr, maximize=True)[1]
    return perms


def apply_permutation(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor],
                      perms: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A new state dict: parameters and BatchNorm buffers permuted, every other key copied."""
    _check_perms(spec, perms)
    missing = [k for k in spec.keys if k not in state_dict]
    if missing:
        raise GlobscopeError(f"re-basin: the state dict has no {missing[0]!r}")
    out = {}
    for key, t in state_dict.items():
        p = _permuted(spec, key, t, perms)
        out[key] = p.clone() if p is t else p  # index_select already copied
    return out


def permute_trajectory(spec: PermutationSpec, states: list[Mapping[str, torch.Tensor]],
                       perms: Mapping[str, np.ndarray]) -> list[dict[str, torch.Tensor]]:
    """The same permutation applied to every checkpoint of a run (a run is re-based as one)."""
    return [apply_permutation(spec, s, perms) for s in states]


@torch.no_grad()
def _logits(model_factory, state, x) -> torch.Tensor:
    return _load(model_factory, state)(x)


def max_output_difference(model_factory: Callable[[], nn.Module], state_a: Mapping, state_b: Mapping,
                          x: torch.Tensor) -> float:
    """max |logits_a - logits_b| on ``x`` (shape (N, ...)), both in fresh models in eval mode."""
    return float((_logits(model_factory, state_a, x) - _logits(model_factory, state_b, x)).abs().max())


def rebasin(model_factory: Callable[[], nn.Module], state_a: Mapping[str, torch.Tensor],
            state_b: Mapping[str, torch.Tensor], x: torch.Tensor, method: str = "weight", seed: int = 0,
            tol: float = 1e-4) -> RebasinResult:
    """Permute B's hidden units into A's basin and check that B's function is unchanged.

    Parameters
    ----------
    model_factory : callable () -> nn.Module
        The architecture (a :class:`~globscope.tasks.Task`'s ``make_model``).
    state_a, state_b : mapping of str to Tensor
        State dicts of the two networks.
    x : Tensor of shape (N, ...)
        Data: its first example gives the spec its shapes, all of it checks the function (and
        feeds activation matching).
    method : {"weight", "activation"}
        Weight matching on the trainable parameters (minimises the distance reported), or
        activation matching on ``x``.
    seed : int
        Weight matching's group order; activation matching is deterministic without one.
    tol : float
        Largest allowed max |logits(B) - logits(permuted B)|, relative to max |logits(B)|.

    Raises
    ------
    GlobscopeError
        When the permuted network does not compute B's function (naming the group whose
        permutation alone changes it, when one does), or for a model that cannot be permuted.
    """
    model = model_factory()
    spec = permutation_spec(model, x[:1])
    layout = ParameterLayout.from_module(model)
    flat_a, flat_b = layout.flatten(state_a, source="state A"), layout.flatten(state_b, source="state B")
    if method == "weight":
        perms = weight_matching(spec, {k: state_a[k] for k in layout.names}, {k: state_b[k] for k in layout.names},
                                seed=seed)
    elif method == "activation":
        perms = activation_matching(spec, model_factory, state_a, state_b, x)
    else:
        raise GlobscopeError(f"re-basin: unknown method {method!r} (weight or activation)")
    state = apply_permutation(spec, state_b, perms)

    logits_b = _logits(model_factory, state_b, x)
    diff = float((_logits(model_factory, state, x) - logits_b).abs().max())
    scale = float(logits_b.abs().max())
    if diff > tol * scale:
        why = "no single group's permutation changes it alone"
        for g in spec.groups.values():  # find the group whose spec does not fit the model
            one = {h: (p if h == g.name else np.arange(len(p))) for h, p in perms.items()}
            d = float((_logits(model_factory, apply_permutation(spec, state_b, one), x) - logits_b).abs().max())
            if d > tol * scale:
                why = (f"permuting {g.name} alone changes it by {d:.3g}: a module among "
                       f"{', '.join(ax.key for ax in g.axes)} does not treat its units as its type says")
                break
        raise GlobscopeError(f"re-basin: the permuted network does not compute B's function (max |logits "
                             f"difference| {diff:.3g} > tol {tol:g} x logit scale {scale:.3g}); {why}")
    flat_pb = layout.flatten(state, source="permuted B").astype(np.float64)
    return RebasinResult(state=state, perms=perms, max_output_diff=diff,
                         distance_before=float(np.linalg.norm(flat_a.astype(np.float64) - flat_b)),
                         distance_after=float(np.linalg.norm(flat_a.astype(np.float64) - flat_pb)))
