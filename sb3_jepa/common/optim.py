"""
Adam and RMSprop with a *flat* step: the same arithmetic as torch's per-parameter loop, bit for bit, done once over
one contiguous buffer that holds every parameter of a group (and one for each state: Adam's two moments, RMSprop's
square average), instead of once per parameter tensor.

Why: on CPU torch has no multi-tensor kernels, so its ``foreach`` step is still a loop of small kernels, several per
tensor, and the optimizer step of a small policy is mostly that per-kernel overhead. SB3's ``MlpPolicy`` under PPO
has 12 parameter tensors of about 10k values in all; a JEPA policy adds the predictor's 4. One Adam step over those
16 tensors took 419 us with ``foreach=True`` and 93 us flat (``benchmarks/speed.py``'s numbers are in the README's
Speed section). Past about 2^18 values the flat step stops paying (its large temporaries cost more than the kernels
it saves: 0.48 against 0.78 ms at 270k values, 2.7 against 2.4 ms at 1.06M), so larger groups (a NatureCNN policy:
1.7M) keep torch's own step; so do groups on an accelerator, where ``foreach`` has real multi-tensor kernels.

How: the first step is torch's own (it creates the state). At the next step the group's parameters and states
are copied into flat buffers, each parameter at a 64-byte aligned offset as a tensor of its own would be, and each
parameter's ``.data`` and each state tensor become *views* of them, so that the module, ``state_dict()`` (the same
per-parameter format as torch's Adam/RMSprop: a saved optimizer loads into either) and a fallback to torch's own
step all see the one copy. Elementwise arithmetic gives the same bits on a view as on a tensor of its own, so a
flat step is torch's step; the parameters' version counters are bumped after it, as an in-place step bumps them.
The views are made again when they stop being the parameters' storage (moved to another device, ``.data``
replaced, an optimizer state loaded), and torch's own step runs instead wherever the flat one would differ from
it: a parameter without a gradient (torch skips it and its step count falls behind), unequal step counts, settings
the flat step does not implement (``amsgrad``, ``maximize``, ``capturable``, ``differentiable``, ``fused``,
RMSprop's ``centered`` or ``momentum``), a learning rate given as a tensor, a closure, sparse or complex
parameters. (A state tensor replaced by hand, not through ``load_state_dict``, is not seen: the flat step goes on
with its own. And ``torch.save`` of a *part* of the module writes the whole buffer its views share, at most
2^18 values: clone what you save alone.)

The JEPA policies build their optimizer with these classes where the user left SB3's default (PPO: Adam, A2C:
RMSprop) and chose no implementation (``foreach`` or ``fused``); plain SB3 takes them too, e.g.
``PPO("MlpPolicy", env, policy_kwargs=dict(optimizer_class=FlatAdam, optimizer_kwargs=dict(eps=1e-5)))`` (SB3
adds its ``eps=1e-5`` for ``th.optim.Adam`` itself only, and A2C its RMSprop settings only when it picks the class:
``dict(alpha=0.99, eps=1e-5, weight_decay=0)``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch as th
from torch.autograd.graph import increment_version

#: The largest group (in parameter values) that the flat step serves; larger ones keep torch's own step
FLAT_MAX_VALUES = 2**18
#: Where each parameter starts in the flat buffer: at a multiple of torch's CPU allocation alignment (64 bytes), as a
#: tensor of its own would. The matrix products of the forward pass can differ in the last bits with the operands'
#: alignment, so that a misaligned view would change the policy's outputs (measured: critic values 1.3714253 against
#: 1.371425 on the same weights).
ALIGNMENT_BYTES = 64


@dataclass
class FlatGroup:
    """One parameter group's flat buffers."""

    #: every parameter's values, one after the other, each at an aligned offset (:func:`aligned_offsets`); each
    #: ``params[i].data`` is a view of it
    values: th.Tensor
    #: the state's flat buffers by key (``exp_avg``, ``exp_avg_sq``; ``square_avg``); each parameter's state entry
    #: is a view of it
    states: dict[str, th.Tensor]
    #: each parameter's step count; each parameter's ``state["step"]`` is a 0-d view of it
    steps: th.Tensor
    #: each parameter's ``data_ptr()`` when the views were made: a parameter whose pointer differs is no longer one
    pointers: list[int]
    #: zeros filling the gaps between parameters (one per parameter but the last), so that the flat gradient has the
    #: values' layout; they stay zero in every buffer (a zero gradient moves neither a zero moment nor a zero value)
    gaps: list[th.Tensor]

    def gradient(self, params: list[th.Tensor]) -> th.Tensor:
        """:return: the parameters' gradients in the layout of :attr:`values`"""
        pieces = []
        for param, gap in zip(params, [*self.gaps, None], strict=True):
            pieces.append(param.grad.reshape(-1))  # type: ignore[union-attr]
            if gap is not None:
                pieces.append(gap)
        return th.cat(pieces)


class FlatStepMixin(th.optim.Optimizer):
    """
    The flat step of :class:`FlatAdam` and :class:`FlatRMSprop`: when to take it, the buffers it works on, and the
    fallback to torch's own step. A subclass names its state's buffers (:attr:`state_keys`), says which settings its
    flat step implements (:meth:`flat_settings`) and writes the arithmetic (:meth:`flat_update`).
    """

    #: the keys of one parameter's state, besides ``step``, that the flat step updates
    state_keys: tuple[str, ...] = ()
    #: one entry per parameter group: its flat buffers, or None where they are still to be made (or cannot be)
    _flat_groups: list[FlatGroup | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_flat()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A copy or an unpickled optimizer gets torch's defaults, state and groups only (Optimizer.__getstate__)
        super().__setstate__(state)
        self._start_flat()

    def _start_flat(self) -> None:
        self._forget_flat_groups(self)
        # A loaded state replaces the state tensors: the views must be made again
        self.register_load_state_dict_post_hook(FlatStepMixin._forget_flat_groups)

    @staticmethod
    def _forget_flat_groups(optimizer: th.optim.Optimizer) -> None:
        """Make every group's views again at its next flat step (or find that it cannot step flat)"""
        assert isinstance(optimizer, FlatStepMixin)
        optimizer._flat_groups = [None] * len(optimizer.param_groups)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_flat_groups"):  # not while the base class's __init__ adds the first groups
            self._flat_groups.append(None)

    def flat_settings(self, group: dict[str, Any]) -> bool:
        """
        :param group: a parameter group
        :return: whether the flat step implements the group's settings
        """
        raise NotImplementedError

    def flat_update(self, group: dict[str, Any], flat: FlatGroup, grad: th.Tensor, step: float) -> None:
        """
        The optimizer's arithmetic on the flat buffers (the step counts are already incremented).

        :param group: the parameter group
        :param flat: its flat buffers
        :param grad: every parameter's gradient, one after the other
        :param step: the step count after this step (as torch's ``_get_value(state["step"])`` gives it)
        """
        raise NotImplementedError

    @th.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """
        One optimizer step: flat where every group allows it, else torch's own.

        :param closure: re-evaluates the model and returns the loss (torch's own step then runs)
        :return: the closure's loss, if any
        """
        flat_groups = None if closure is not None else self._ready_flat_groups()
        if flat_groups is None:
            loss = self._torch_step(closure)
            # Steps may have been taken for some parameters only: check the counts again before the next flat step
            self._forget_flat_groups(self)
            return loss
        for group, flat in zip(self.param_groups, flat_groups, strict=True):
            grad = flat.gradient(group["params"])
            flat.steps.add_(1)
            self.flat_update(group, flat, grad, flat.steps[0].item())
            # The parameters were changed through the flat buffer, which their own version counters do not see (a
            # parameter whose .data was replaced keeps its counter): bump them as an in-place step would, so that
            # autograd still refuses a graph that saved the old values, and the A2C final embeddings' cache
            # (JEPAOnPolicyAlgorithm._jepa_encoder_versions) still sees new weights
            increment_version(group["params"])
        return None

    def _torch_step(self, closure: Callable[[], float] | None) -> float | None:
        """
        Torch's own step, without the step hooks: torch wraps a class's ``step`` with them (``_patch_step_function``)
        once an instance of it exists, so that calling ``Adam.step`` from this class's already wrapped ``step``
        would run every registered hook (and profiler record) twice
        """
        step = super().step.__func__  # type: ignore[attr-defined]
        if getattr(step, "hooked", False):
            step = step.__wrapped__
        return step(self, closure)

    def _ready_flat_groups(self) -> list[FlatGroup] | None:
        """:return: every group's flat buffers, made where they are missing or stale; None if a group cannot step flat"""
        ready = []
        for index, group in enumerate(self.param_groups):
            params = group["params"]
            if not self.flat_settings(group) or any(param.grad is None for param in params):
                return None
            flat = self._flat_groups[index]
            # A parameter moved, replaced or added since the views were made: make them again
            if flat is None or [param.data_ptr() for param in params] != flat.pointers:
                flat = self._flat_groups[index] = self._make_flat_group(params)
                if flat is None:
                    return None
            ready.append(flat)
        return ready

    def _make_flat_group(self, params: list[th.Tensor]) -> FlatGroup | None:
        """
        Copy a group's parameters and states into flat buffers and make them views of those.

        :param params: the group's parameters
        :return: the flat buffers, or None where the group cannot step flat (see the module's docstring)
        """
        if not params or sum(param.numel() for param in params) > FLAT_MAX_VALUES:
            return None
        first = params[0]
        if first.device.type != "cpu" or not first.is_floating_point():
            return None
        states = [self.state.get(param, {}) for param in params]
        for param, state in zip(params, states, strict=True):
            if (
                param.dtype != first.dtype
                or param.device != first.device
                or param.is_sparse
                or param.grad is None
                or param.grad.is_sparse
                or not param.is_contiguous()
                or not param.grad.is_contiguous()
                or not isinstance(state.get("step"), th.Tensor)
                or any(not _state_like(state.get(key), param) for key in self.state_keys)
            ):
                return None  # the first step (no state yet) is torch's: it makes the state
        steps = th.stack([state["step"] for state in states])
        if not bool((steps == steps[0]).all()):
            return None
        offsets, size = aligned_offsets([param.numel() for param in params], ALIGNMENT_BYTES // first.element_size())
        values, views = _flatten(params, offsets, size)
        for param, view in zip(params, views, strict=True):
            param.data = view
        flat_states = {}
        for key in self.state_keys:
            flat_states[key], views = _flatten([state[key] for state in states], offsets, size)
            for state, view in zip(states, views, strict=True):
                state[key] = view
        for i, state in enumerate(states):
            state["step"] = steps[i]
        ends = [offset + param.numel() for offset, param in zip(offsets, params, strict=True)]
        gaps = [values.new_zeros(start - end) for end, start in zip(ends[:-1], offsets[1:], strict=True)]
        return FlatGroup(values, flat_states, steps, [param.data_ptr() for param in params], gaps)


def _state_like(state: Any, param: th.Tensor) -> bool:
    """:return: whether ``state`` is a tensor of ``param``'s shape, dtype and device (a state the flat step can hold)"""
    if not isinstance(state, th.Tensor):
        return False
    return (state.shape, state.dtype, state.device) == (param.shape, param.dtype, param.device)


def aligned_offsets(numels: list[int], alignment: int) -> tuple[list[int], int]:
    """
    Where each tensor starts in a flat buffer that keeps every start a multiple of ``alignment`` elements.

    Example: tensors of 3, 20 and 1 values, aligned to 16 values (64 bytes of float32)::

        aligned_offsets([3, 20, 1], 16) == ([0, 16, 48], 49)

    (values 3-15 and 36-47 are gaps).

    :param numels: each tensor's number of values
    :param alignment: the alignment, in values
    :return: each tensor's offset and the buffer's size
    """
    offsets, end = [], 0
    for numel in numels:
        start = -(-end // alignment) * alignment  # end rounded up to a multiple of alignment
        offsets.append(start)
        end = start + numel
    return offsets, end


def _flatten(tensors: list[th.Tensor], offsets: list[int], size: int) -> tuple[th.Tensor, list[th.Tensor]]:
    """
    :param tensors: tensors of one dtype and device
    :param offsets: where each starts (:func:`aligned_offsets`)
    :param size: the buffer's size
    :return: a flat buffer holding the tensors' values at their offsets (zeros in the gaps), and each tensor's view of
        it (its shape)
    """
    flat = tensors[0].new_zeros(size)
    views = []
    for tensor, offset in zip(tensors, offsets, strict=True):
        view = flat[offset : offset + tensor.numel()].view_as(tensor)
        view.copy_(tensor.detach())
        views.append(view)
    return flat, views


def _plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class FlatAdam(FlatStepMixin, th.optim.Adam):
    """
    :class:`torch.optim.Adam` with the flat step (see the module's docstring): the same arguments, the same state
    and the same results, bit for bit.
    """

    state_keys = ("exp_avg", "exp_avg_sq")

    def flat_settings(self, group: dict[str, Any]) -> bool:
        return (
            not group["amsgrad"]
            and not group["maximize"]
            and not group["capturable"]
            and not group["differentiable"]
            and not group["fused"]
            and _plain_number(group["lr"])
            and _plain_number(group["weight_decay"])
            and all(_plain_number(beta) for beta in group["betas"])
        )

    def flat_update(self, group: dict[str, Any], flat: FlatGroup, grad: th.Tensor, step: float) -> None:
        # torch.optim.adam._single_tensor_adam, line for line, on the flat buffers
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        exp_avg, exp_avg_sq = flat.states["exp_avg"], flat.states["exp_avg_sq"]
        if weight_decay != 0:
            if group.get("decoupled_weight_decay", False):
                flat.values.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(flat.values, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        flat.values.addcdiv_(exp_avg, denom, value=-step_size)


class FlatRMSprop(FlatStepMixin, th.optim.RMSprop):
    """
    :class:`torch.optim.RMSprop` with the flat step (see the module's docstring): the same arguments, the same state
    and the same results, bit for bit.
    """

    state_keys = ("square_avg",)

    def flat_settings(self, group: dict[str, Any]) -> bool:
        return (
            not group["centered"]
            and group["momentum"] == 0
            and not group["maximize"]
            and not group["capturable"]
            and not group["differentiable"]
            and _plain_number(group["lr"])
            and _plain_number(group["weight_decay"])
            and _plain_number(group["alpha"])
        )

    def flat_update(self, group: dict[str, Any], flat: FlatGroup, grad: th.Tensor, step: float) -> None:
        # torch.optim.rmsprop._single_tensor_rmsprop (not centered, no momentum), line for line, on the flat buffers
        lr, alpha, eps, weight_decay = group["lr"], group["alpha"], group["eps"], group["weight_decay"]
        square_avg = flat.states["square_avg"]
        if weight_decay != 0:
            grad = grad.add(flat.values, alpha=weight_decay)
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        avg = square_avg.sqrt().add_(eps)
        flat.values.addcdiv_(grad, avg, value=-lr)


#: The flat optimizer of each of torch's (exactly these classes: a subclass may change the step)
FLAT_OPTIMIZERS: dict[type[th.optim.Optimizer], type[th.optim.Optimizer]] = {
    th.optim.Adam: FlatAdam,
    th.optim.RMSprop: FlatRMSprop,
}
