"""The flat Adam and RMSprop: torch's results bit for bit, in one buffer, and torch's own step where they cannot."""

import copy
import pickle

import pytest
import torch as th

from sb3_jepa.common.optim import ALIGNMENT_BYTES, FLAT_MAX_VALUES, FlatAdam, FlatRMSprop, aligned_offsets

#: Odd shapes on purpose: sizes that are not multiples of a SIMD width, a 0-d-like (1,), a 3-D one
SHAPES = [(64, 4), (64,), (64, 64), (2, 64), (2,), (1,), (3, 5, 7)]

#: (torch's class, the flat one, arguments)
CASES = [
    (th.optim.Adam, FlatAdam, dict(lr=3e-4, eps=1e-5)),
    (th.optim.Adam, FlatAdam, dict(lr=1e-3, weight_decay=0.1)),
    (th.optim.Adam, FlatAdam, dict(lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True)),
    (th.optim.RMSprop, FlatRMSprop, dict(lr=7e-4, alpha=0.99, eps=1e-5)),
    (th.optim.RMSprop, FlatRMSprop, dict(lr=7e-4, weight_decay=0.01)),
]


def make_params(shapes=SHAPES, seed=0) -> list[th.nn.Parameter]:
    generator = th.Generator().manual_seed(seed)
    return [th.nn.Parameter(th.randn(shape, generator=generator)) for shape in shapes]


def gradients(params, step: int) -> list[th.Tensor]:
    """Gradients of varied magnitudes (1e-6 to 10), the same for every optimizer at a given step"""
    generator = th.Generator().manual_seed(1000 + step)
    scale = 10.0 ** th.randint(-6, 2, (len(params),), generator=generator)
    return [th.randn(param.shape, generator=generator) * s for param, s in zip(params, scale, strict=True)]


def run(optimizer, params, steps: range, drop_grad: dict[int, int] | None = None) -> None:
    for step in steps:
        for param, grad in zip(params, gradients(params, step), strict=True):
            param.grad = grad
        if drop_grad and step in drop_grad:
            params[drop_grad[step]].grad = None
        if step == 7:
            optimizer.param_groups[0]["lr"] *= 0.5  # as SB3's learning-rate schedule does
        optimizer.step()


def one_buffer(params) -> bool:
    """Whether every parameter is a view of one buffer (the flat step's)"""
    return len({param.untyped_storage().data_ptr() for param in params}) == 1


def test_aligned_offsets():
    assert aligned_offsets([3, 20, 1], 16) == ([0, 16, 48], 49)  # the docstring's example
    assert aligned_offsets([16, 16], 16) == ([0, 16], 32)  # already aligned: no gap
    assert aligned_offsets([5], 16) == ([0], 5)  # no gap after the last
    assert aligned_offsets([], 16) == ([], 0)


def test_every_parameter_starts_aligned_in_the_buffer():
    """As a tensor of its own would (a misaligned operand can change a matrix product's last bits)"""
    params = make_params()
    run(FlatAdam(params), params, range(2))
    assert one_buffer(params)
    assert all(param.data_ptr() % ALIGNMENT_BYTES == 0 for param in params)


def assert_same(params_a, params_b):
    for a, b in zip(params_a, params_b, strict=True):
        assert th.equal(a, b)


@pytest.mark.parametrize("torch_cls, flat_cls, kwargs", CASES)
def test_flat_step_is_torchs_bit_for_bit(torch_cls, flat_cls, kwargs):
    reference, flat = make_params(), make_params()
    run(torch_cls(reference, foreach=False, **kwargs), reference, range(15))
    optimizer = flat_cls(flat, **kwargs)
    run(optimizer, flat, range(15))
    assert_same(reference, flat)
    assert one_buffer(flat)  # the flat step ran (after torch's first)
    reference_state = torch_cls(reference, **kwargs).state_dict()  # (a fresh one: only the format matters here)
    assert optimizer.state_dict()["param_groups"][0].keys() == reference_state["param_groups"][0].keys()


@pytest.mark.parametrize("torch_cls, flat_cls, kwargs", CASES[:1] + CASES[3:4])
def test_state_dict_moves_between_flat_and_torch(torch_cls, flat_cls, kwargs):
    """A flat optimizer's state loads into torch's and back, and both go on exactly as one never interrupted"""
    uninterrupted = make_params()
    run(torch_cls(uninterrupted, **kwargs), uninterrupted, range(12))

    first = make_params()
    flat = flat_cls(first, **kwargs)
    run(flat, first, range(5))
    second = [th.nn.Parameter(param.detach().clone()) for param in first]
    plain = torch_cls(second, **kwargs)
    plain.load_state_dict(copy.deepcopy(flat.state_dict()))
    run(plain, second, range(5, 8))
    third = [th.nn.Parameter(param.detach().clone()) for param in second]
    flat_again = flat_cls(third, **kwargs)
    flat_again.load_state_dict(copy.deepcopy(plain.state_dict()))
    run(flat_again, third, range(8, 12))
    assert_same(uninterrupted, third)
    assert one_buffer(third)
    for state in flat_again.state.values():  # the loaded state tensors became views too
        assert state["step"].item() == 12


def test_a_parameter_without_gradient_is_skipped_as_torch_skips_it():
    reference, flat = make_params(), make_params()
    drop = {4: 1, 5: 1, 9: 2}
    run(th.optim.Adam(reference, foreach=False), reference, range(12), drop)
    optimizer = FlatAdam(flat)
    run(optimizer, flat, range(12), drop)
    assert_same(reference, flat)
    assert optimizer.state[flat[1]]["step"].item() == 10  # two steps skipped, as torch counts them


def test_replaced_parameters_are_flattened_again():
    reference, flat = make_params(), make_params()
    reference_optimizer, optimizer = th.optim.Adam(reference, foreach=False), FlatAdam(flat)
    run(reference_optimizer, reference, range(4))
    run(optimizer, flat, range(4))
    for param in flat:  # what .to(device) does to a parameter: new storage, same values
        param.data = param.data.clone()
    assert not one_buffer(flat)
    run(reference_optimizer, reference, range(4, 8))
    run(optimizer, flat, range(4, 8))
    assert_same(reference, flat)
    assert one_buffer(flat)


@pytest.mark.parametrize(
    "kwargs, shapes",
    [
        (dict(amsgrad=True), SHAPES),
        (dict(maximize=True), SHAPES),
        ({}, [(FLAT_MAX_VALUES + 1,), (3,)]),  # too large to pay
    ],
)
def test_torchs_own_step_where_the_flat_one_does_not_apply(kwargs, shapes):
    reference, flat = make_params(shapes), make_params(shapes)
    run(th.optim.Adam(reference, foreach=False, **kwargs), reference, range(6))
    run(FlatAdam(flat, **kwargs), flat, range(6))
    assert_same(reference, flat)
    assert not one_buffer(flat)


def test_a_closure_gets_torchs_own_step_and_its_loss():
    params = make_params()
    optimizer = FlatRMSprop(params, momentum=0.0)

    def closure() -> float:
        for param, grad in zip(params, gradients(params, 0), strict=True):
            param.grad = grad
        return 1.5

    assert optimizer.step(closure) == 1.5
    assert optimizer.step(closure) == 1.5
    assert not one_buffer(params)


def test_added_param_group_steps_flat():
    reference, flat = make_params(), make_params()
    reference_optimizer = th.optim.Adam(reference[:3], foreach=False)
    reference_optimizer.add_param_group(dict(params=reference[3:], lr=1e-2))
    optimizer = FlatAdam(flat[:3])
    optimizer.add_param_group(dict(params=flat[3:], lr=1e-2))
    run(reference_optimizer, reference, range(5))
    run(optimizer, flat, range(5))
    assert_same(reference, flat)
    assert one_buffer(flat[:3]) and one_buffer(flat[3:]) and not one_buffer(flat)


def test_a_flat_step_is_seen_by_autograd_as_an_in_place_change():
    """Each parameter's version counter moves, so that a graph that saved the old values is refused, as with torch's"""
    params = make_params()
    optimizer = FlatAdam(params)
    run(optimizer, params, range(2))
    assert one_buffer(params)
    versions = [param._version for param in params]
    loss = sum((param * param).sum() for param in params)  # saves the parameters for its backward
    run(optimizer, params, range(2, 3))
    assert all(param._version > version for param, version in zip(params, versions, strict=True))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("copy_of", [copy.deepcopy, lambda optimizer: pickle.loads(pickle.dumps(optimizer))])
def test_a_copied_optimizer_steps_as_the_original(copy_of):
    params = make_params()
    optimizer = FlatAdam(params)
    run(optimizer, params, range(3))
    copied = copy_of(optimizer)
    copied_params = copied.param_groups[0]["params"]
    run(optimizer, params, range(3, 6))
    run(copied, copied_params, range(3, 6))
    assert_same(params, copied_params)
    assert one_buffer(copied_params)
    copied.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # still listened to: the views are made again
    run(optimizer, params, range(6, 8))
    run(copied, copied_params, range(6, 8))
    assert_same(params, copied_params)


def test_step_hooks_run_once_per_step_on_both_paths():
    th.optim.Adam(make_params())  # an instance of torch's class wraps Adam.step with the hooks too
    params = make_params()
    optimizer = FlatAdam(params)
    calls = []
    optimizer.register_step_post_hook(lambda *args: calls.append(one_buffer(params)))
    run(optimizer, params, range(3))
    assert calls == [False, True, True]  # torch's first step, then flat ones: once each
