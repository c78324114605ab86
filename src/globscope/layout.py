"""ParameterLayout: the order, names, shapes and dtypes of a network's trainable parameters.

A layout turns a state dict into one flat float32 vector and back. Buffers (BatchNorm running
statistics, counters) are not trainable and are kept apart from the vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from globscope.errors import GlobscopeError


@dataclass(frozen=True)
class ParameterEntry:
    """One trainable tensor: its state-dict key, shape and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class ParameterLayout:
    """Ordered trainable parameters of an architecture.

    Parameters
    ----------
    entries : sequence of ParameterEntry
        The trainable tensors in vector order.
    buffers : sequence of str
        State-dict keys that are buffers (kept beside the vector, never in it).
    buffer_shapes : mapping of str to tuple of int, optional
        The buffers' shapes where known (a module's, a state dict's); ``check`` holds state dicts
        to them as to the parameters' shapes.
    """

    def __init__(self, entries, buffers=(), buffer_shapes=None):
        self.entries = tuple(entries)
        self.buffers = tuple(buffers)
        self.buffer_shapes = dict(buffer_shapes or {})
        self.offsets = np.cumsum([0] + [e.size for e in self.entries])
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise GlobscopeError("ParameterLayout: duplicate parameter names")

    @property
    def n_params(self) -> int:
        """D, the length of the flat vector."""
        return int(self.offsets[-1])

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> ParameterLayout:
        """Layout of ``module``: ``named_parameters()`` order, its buffers apart."""
        entries = [
            ParameterEntry(n, tuple(p.shape), str(p.dtype).removeprefix("torch."))
            for n, p in module.named_parameters()
            if p.requires_grad
        ]
        buffers = dict(module.named_buffers())
        return cls(entries, list(buffers), {n: tuple(b.shape) for n, b in buffers.items()})

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], buffers=()) -> ParameterLayout:
        """Layout of a state dict whose floating tensors not named in ``buffers`` are parameters."""
        buffers = set(buffers)
        entries = [
            ParameterEntry(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in state.items()
            if k not in buffers and v.is_floating_point()
        ]
        shapes = {k: tuple(v.shape) for k, v in state.items() if k in buffers}
        return cls(entries, list(shapes), shapes)

    def to_dict(self) -> dict:
        return {
            "entries": [[e.name, list(e.shape), e.dtype] for e in self.entries],
            "buffers": list(self.buffers),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ParameterLayout:
        return cls([ParameterEntry(n, tuple(s), t) for n, s, t in d["entries"]], d.get("buffers", ()))

    def __eq__(self, other) -> bool:
        return isinstance(other, ParameterLayout) and self.entries == other.entries

    def __repr__(self) -> str:
        return f"ParameterLayout({len(self.entries)} tensors, D={self.n_params})"

    def check(self, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        """Raise GlobscopeError naming ``source`` and the key if ``state`` does not fit."""
        keys = set(state)
        missing = [e.name for e in self.entries if e.name not in keys]
        if missing:
            raise GlobscopeError(f"{source}: architecture mismatch, missing parameter {missing[0]!r}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        extra = sorted(keys - set(self.names) - set(self.buffers))
        extra = [k for k in extra if state[k].is_floating_point()]
        if extra:
            raise GlobscopeError(f"{source}: architecture mismatch, unexpected parameter {extra[0]!r}"
                                 + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        # buffers too: a wrong running_mean passes the fit but breaks the landscape's forward passes
        expected = [("parameter", e.name, e.shape) for e in self.entries]
        expected += [("buffer", k, shape) for k, shape in self.buffer_shapes.items() if k in state]
        for kind, name, want in expected:
            shape = tuple(state[name].shape)
            if shape != want:
                raise GlobscopeError(f"{source}: architecture mismatch, {kind} {name!r} has shape {shape}, "
                                     f"expected {want}")

    def flatten(self, state: Mapping[str, torch.Tensor], out: np.ndarray | None = None,
                source: str = "state dict") -> np.ndarray:
        """Flat vector of the trainable parameters.

        Parameters
        ----------
        state : mapping of str to Tensor
        out : ndarray of shape (D,), optional
            Written in place (e.g. a row of a memory-mapped W).

        Returns
        -------
        ndarray of shape (D,), float32
        """
        self.check(state, source)
        if out is None:
            out = np.empty(self.n_params, dtype=np.float32)
        for e, a, b in zip(self.entries, self.offsets[:-1], self.offsets[1:]):
            t = state[e.name].detach().to("cpu", torch.float32).reshape(-1).numpy()
            if not np.isfinite(t).all():
                raise GlobscopeError(f"{source}: parameter {e.name!r} holds NaN or Inf values")
            out[a:b] = t
        return out

    def unflatten(self, vector, dtype: bool = True) -> dict[str, torch.Tensor]:
        """State dict (parameters only) from a vector of shape (D,) or a batch (B, D).

        With a batch, each tensor gets a leading dimension B (the form ``torch.func``'s
        ``functional_call`` under ``vmap`` takes). ``dtype`` restores each entry's own dtype.
        """
        v = torch.as_tensor(vector)
        if v.shape[-1] != self.n_params:
            raise GlobscopeError(f"vector of length {v.shape[-1]} does not fit {self!r}")
        lead = tuple(v.shape[:-1])
        out = {}
        for e, a, b in zip(self.entries, self.offsets[:-1], self.offsets[1:]):
            t = v[..., a:b].reshape(lead + e.shape)
            out[e.name] = t.to(getattr(torch, e.dtype)) if dtype else t
        return out
