"""
What the JEPA term costs: wall time and rollout-buffer memory of A2CJEPA/PPOJEPA against plain SB3 A2C/PPO with
identical settings (same architecture, same hyperparameters), the runs of each pair interleaved in one
invocation (A B, B A, A B...) so that the shared machine's noise hits both alike.

    python -m benchmarks.speed                              # every pair, CPU
    python -m benchmarks.speed --pairs ppo-cnn --target ema --timesteps 8192 --repeats 5
    python -m benchmarks.speed --device cuda
    python -m benchmarks.speed --profile --pairs ppo-mlp     # where JEPA's extra time goes (cProfile, grouped)
    python -m benchmarks.speed --update --pairs ppo-mlp      # the update alone: train() on one fixed rollout
    python -m benchmarks.speed --plain-optimizer flat        # both sides with the flat optimizer: the JEPA term alone

Pairs: ``a2c-cnn`` / ``ppo-cnn`` (CnnPolicy on an ALE game, 8 envs, rl-zoo3's Atari settings) and
``a2c-mlp`` / ``ppo-mlp`` (MlpPolicy on CartPole-v1). For each pair it prints the median over repeats of the
wall-time ratio JEPA/plain, both throughputs (steps/s), and the JEPA buffer's extra bytes relative to SB3's own
arrays, measured at the end of every rollout: the largest ratio seen and the mean.

``--update`` times the update alone: each side learns one rollout (so that the optimizer has its state) and collects
another, then ``train()`` runs again and again on that one from the same weights, optimizer state and (A2CJEPA) final
observations' embeddings, the sides interleaved; it prints the median ratio, the smallest time of each
side and the JEPA side's extra time per minibatch (the rollouts, with their own noise, are left out).

``--profile`` runs each side of a pair once more under cProfile and prints, per pair, where the JEPA side's extra
time goes (:data:`PROFILE_GROUPS`): time in the JEPA functions themselves, and for the functions both sides call
(backward, the optimizer, gradient clipping, the policy's forward) the JEPA side's time minus the plain side's.
cProfile's per-call overhead inflates Python-heavy parts, so read the shares, not the absolute times.
"""

import argparse
import copy
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from sb3_jepa import A2CJEPA, PPOJEPA, JEPAFeaturesExtractor
from sb3_jepa.common.loss import TARGET_MODES
from sb3_jepa.common.optim import FlatAdam, FlatRMSprop


@dataclass
class Pair:
    """A plain SB3 algorithm and its JEPA subclass, with the settings both get."""

    plain: type[BaseAlgorithm]
    jepa: type[BaseAlgorithm]
    policy: str
    make_env: Callable[[int], VecEnv]
    kwargs: dict[str, Any]
    plain_policy_kwargs: dict[str, Any]


def atari_env(env_id: str) -> Callable[[int], VecEnv]:
    def make(seed: int) -> VecEnv:
        import ale_py

        gym.register_envs(ale_py)
        return VecFrameStack(make_atari_env(env_id, n_envs=8, seed=seed), n_stack=4)

    return make


def cartpole(seed: int) -> VecEnv:
    return make_vec_env("CartPole-v1", n_envs=8, seed=seed)


# The MLP JEPA policy's encoders (the actor's E and the critic's own, since 0.2.0) are JEPAFeaturesExtractor with
# linear heads: plain SB3 gets the same network
MLP_AS_JEPA = dict(net_arch=[], features_extractor_class=JEPAFeaturesExtractor, share_features_extractor=False)


def pairs(atari_id: str) -> dict[str, Pair]:
    # rl-zoo3's Atari settings (hyperparams/a2c.yml, ppo.yml), schedules left out
    a2c_atari = dict(ent_coef=0.01, vf_coef=0.25)
    ppo_atari = dict(n_steps=128, n_epochs=4, batch_size=256, clip_range=0.1, ent_coef=0.01, vf_coef=0.5, learning_rate=2.5e-4)
    return {
        "a2c-cnn": Pair(A2C, A2CJEPA, "CnnPolicy", atari_env(atari_id), a2c_atari, {}),
        "ppo-cnn": Pair(PPO, PPOJEPA, "CnnPolicy", atari_env(atari_id), ppo_atari, {}),
        "a2c-mlp": Pair(A2C, A2CJEPA, "MlpPolicy", cartpole, dict(n_steps=8), MLP_AS_JEPA),
        "ppo-mlp": Pair(PPO, PPOJEPA, "MlpPolicy", cartpole, dict(n_steps=256, batch_size=64, n_epochs=10), MLP_AS_JEPA),
    }


#: ``--plain-optimizer flat``: the plain side's optimizer as the JEPA policies build theirs (sb3_jepa/common/optim.py),
#: with SB3's own settings (which SB3 leaves out once optimizer_class is given)
PLAIN_FLAT_OPTIMIZER: dict[type[BaseAlgorithm], dict[str, Any]] = {
    A2C: dict(optimizer_class=FlatRMSprop, optimizer_kwargs=dict(alpha=0.99, eps=1e-5, weight_decay=0, foreach=True)),
    PPO: dict(optimizer_class=FlatAdam, optimizer_kwargs=dict(eps=1e-5, foreach=True)),
}

#: The arrays SB3's own RolloutBuffer holds
SB3_BUFFER_ARRAYS = ("observations", "actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages")


class BufferBytes(BaseCallback):
    """
    What JEPA adds to the rollout buffer, relative to SB3's own arrays, at the end of each rollout and once after
    training (when the last rollout also holds the lookup tables that sampling builds): the largest ratio seen and
    the mean (A2C's 40-row buffers make one terminal observation 2.5%, so the max overstates it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ratios: list[float] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.record()

    def record(self) -> None:
        """Add the buffer's current ratio."""
        buffer = self.model.rollout_buffer  # type: ignore[attr-defined]
        base = 0
        for name in SB3_BUFFER_ARRAYS:
            array = getattr(buffer, name)
            base += sum(a.nbytes for a in array.values()) if isinstance(array, dict) else array.nbytes
        if hasattr(buffer, "jepa_nbytes"):
            self.ratios.append(buffer.jepa_nbytes() / max(base, 1))


#: ``--clock``: ``wall`` (what a user waits) or ``process`` (this process's CPU time, all its threads: on shared
#: cores a neighbour's load stretches the wall time of whichever side it lands on, not the CPU time; the envs step
#: in this process, DummyVecEnv, so both count everything a run does)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}


def make_model(pair: Pair, jepa: bool, args: argparse.Namespace, seed: int) -> OnPolicyAlgorithm:
    """
    :param pair: the pair
    :param jepa: the JEPA side (with ``--target`` and ``--segment-length``), else the plain one
    :param args: the benchmark's arguments
    :param seed: the seed of the model and of its env
    :return: the side's model, on a new env
    """
    env = pair.make_env(seed)
    kwargs = dict(pair.kwargs, seed=seed, device=args.device)
    if jepa:
        if args.target is not None:  # else the algorithm's default (stop_grad)
            kwargs.update(jepa_target=args.target)
        if args.segment_length and pair.jepa is PPOJEPA:
            kwargs.update(jepa_segment_length=args.segment_length)
        model = pair.jepa(pair.policy, env, **kwargs)
    else:
        policy_kwargs = dict(pair.plain_policy_kwargs)
        if args.plain_optimizer == "flat":
            policy_kwargs.update(PLAIN_FLAT_OPTIMIZER[pair.plain])
        model = pair.plain(pair.policy, env, policy_kwargs=policy_kwargs, **kwargs)
    assert isinstance(model, OnPolicyAlgorithm)
    return model


def timed_run(pair: Pair, jepa: bool, args: argparse.Namespace, seed: int) -> tuple[float, BufferBytes]:
    model = make_model(pair, jepa, args, seed)
    env = model.get_env()
    assert env is not None
    memory = BufferBytes()
    clock = CLOCKS[args.clock]
    start = clock()
    model.learn(args.timesteps, callback=memory)
    elapsed = clock() - start
    memory.record()
    env.close()
    return elapsed, memory


def update_times(pair: Pair, args: argparse.Namespace) -> tuple[list[float], dict[bool, list[float]], int]:
    """
    Time ``train()`` alone: each side learns one rollout and collects another, then trains on that one again and
    again from the same weights, optimizer state and final observations' embeddings, the sides interleaved
    (``args.repeats`` pairs), each timing repeating ``train()`` until it lasts about 0.2 s.

    :param pair: the pair
    :param args: the benchmark's arguments
    :return: the JEPA/plain ratios, each side's seconds per ``train()``, and the minibatches per ``train()``
    """
    models: dict[bool, OnPolicyAlgorithm] = {}
    saved = {}
    for jepa in (False, True):
        model = make_model(pair, jepa, args, seed=0)
        model.learn(model.n_steps * model.n_envs)  # one rollout, one update: the optimizer has its state
        # One more rollout, not trained on: train() then starts where learn() would start it, with the final
        # observations' embeddings of A2CJEPA's collection (which its first optimizer step drops: restored below)
        _, callback = model._setup_learn(model.n_steps * model.n_envs, reset_num_timesteps=False)
        assert model.env is not None
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        models[jepa] = model
        final_embeddings = getattr(model.rollout_buffer, "final_embeddings", None)
        assert len(model.policy.optimizer.param_groups) == 1, "SB3's policies build one parameter group"
        optimizer_state = [model.policy.optimizer.state[param] for param in model.policy.optimizer.param_groups[0]["params"]]
        saved[jepa] = copy.deepcopy((model.policy.state_dict(), optimizer_state, final_embeddings))
    clock = CLOCKS[args.clock]

    def one_train(jepa: bool) -> float:
        model = models[jepa]
        model.policy.load_state_dict(saved[jepa][0])
        # The optimizer's state restored in place, not by load_state_dict(), which would make a flat optimizer
        # (sb3_jepa/common/optim.py) lay out its buffers again in every timing: in learn() it does that once
        optimizer = model.policy.optimizer
        for param, saved_state in zip(optimizer.param_groups[0]["params"], saved[jepa][1], strict=True):
            for key, value in saved_state.items():
                optimizer.state[param][key].copy_(value)
        if jepa:
            model.rollout_buffer.final_embeddings = saved[jepa][2]  # type: ignore[attr-defined]
            # loading bumped the weights' versions: they are those the embeddings were made with
            model._jepa_final_versions = model._jepa_encoder_versions()  # type: ignore[attr-defined]
        start = clock()
        model.train()
        return clock() - start

    inner = max(1, int(0.2 / max(one_train(False), 1e-6)))

    def timed(jepa: bool) -> float:
        return sum(one_train(jepa) for _ in range(inner)) / inner

    times: dict[bool, list[float]] = {False: [], True: []}
    ratios = []
    for repeat in range(args.repeats):
        for jepa in [False, True] if repeat % 2 == 0 else [True, False]:
            times[jepa].append(timed(jepa))
        ratios.append(times[True][-1] / times[False][-1])
    model = models[False]
    rows = model.n_steps * model.n_envs
    batch = getattr(model, "batch_size", None) or rows
    minibatches = getattr(model, "n_epochs", 1) * -(-rows // batch)
    for model in models.values():
        env = model.get_env()
        assert env is not None
        env.close()
    return ratios, times, minibatches


#: The profile's groups: name -> (kind, functions as (path suffix, function name)). ``jepa``: cumulative time of
#: these JEPA functions in the JEPA run; ``extra``: cumulative time in the JEPA run minus the plain run's (functions
#: both sides call). The JEPA functions are chosen so that none of them calls another of a different group.
PROFILE_GROUPS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "rollouts: terminal/final observations": (
        "jepa",
        (
            ("sb3_jepa/common/buffers.py", "add_terminal_observations"),
            ("sb3_jepa/common/buffers.py", "add_final_observations"),
            ("sb3_jepa/common/buffers.py", "_prepare_successors"),
        ),
    ),
    "minibatch: successor lookup (_next_fields)": ("jepa", (("sb3_jepa/common/buffers.py", "_next_fields"),)),
    "capture hooks (start/stop, the hooks)": (
        "jepa",
        (
            ("sb3_jepa/common/on_policy_algorithm.py", "_jepa_capture_start"),
            ("sb3_jepa/common/policies.py", "jepa_capture_stop"),
            ("sb3_jepa/common/policies.py", "pre_hook"),
            ("sb3_jepa/common/policies.py", "hook"),
        ),
    ),
    "predictor forward (W)": ("jepa", (("sb3_jepa/common/jepa.py", "forward"),)),  # JEPAPredictor.forward, see below
    "targets (encoding the extra successors)": (
        "jepa",
        (("sb3_jepa/common/loss.py", "target_rows"), ("sb3_jepa/common/loss.py", "one_step_ema_target")),
    ),
    "loss arithmetic": (
        "jepa",
        (("sb3_jepa/common/loss.py", "masked_prediction_loss"), ("sb3_jepa/common/loss.py", "later_steps_loss")),
    ),
    "finite check, VICReg, statistics": ("jepa", (("sb3_jepa/common/on_policy_algorithm.py", "_jepa_add_loss"),)),
    "metrics and logs (when read: record_jepa_metrics)": (
        "jepa",
        (
            ("sb3_jepa/common/on_policy_algorithm.py", "_jepa_log"),
            ("sb3_jepa/common/on_policy_algorithm.py", "record_jepa_metrics"),
        ),
    ),
    "EMA target update": ("jepa", (("sb3_jepa/common/on_policy_algorithm.py", "_jepa_after_step"),)),
    "backward (extra graph)": ("extra", (("torch/autograd/__init__.py", "backward"),)),
    "optimizer step (extra parameters)": ("extra", (("torch/optim/optimizer.py", "wrapper"),)),
    "clip_grad_norm_ (extra parameters)": ("extra", (("torch/nn/utils/clip_grad.py", "clip_grad_norm_"),)),
    "policy forward (evaluate_actions)": ("extra", (("stable_baselines3/common/policies.py", "evaluate_actions"),)),
}


#: The capture hooks, which run inside the policy's forward pass
HOOKS = (("sb3_jepa/common/policies.py", "pre_hook"), ("sb3_jepa/common/policies.py", "hook"))


def _cumulative(stats: pstats.Stats, functions: tuple[tuple[str, str], ...], line: int | None = None) -> float:
    """:return: the cumulative seconds of the functions (matched by path suffix and name) in a profile"""
    total = 0.0
    for (path, lineno, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        matches = any(path.endswith(suffix) and name == function for suffix, function in functions)
        if matches and (line is None or lineno == line):
            total += cumulative
    return total


def profile_pair(pair: Pair, args: argparse.Namespace) -> list[tuple[str, float]]:
    """
    :param pair: the pair
    :param args: the benchmark's arguments
    :return: (group, seconds) rows: each :data:`PROFILE_GROUPS` group's share of the JEPA run's extra time, then the
        part no group accounts for, and the total extra time
    """
    totals, profiles = {}, {}
    for jepa in (False, True):
        profiler = cProfile.Profile()
        profiler.enable()
        timed_run(pair, jepa, args, seed=0)
        profiler.disable()
        profiles[jepa] = pstats.Stats(profiler)
        totals[jepa] = profiles[jepa].total_tt  # type: ignore[attr-defined]
    from sb3_jepa.common import jepa as jepa_module

    predictor_line = jepa_module.JEPAPredictor.forward.__code__.co_firstlineno
    jepa_loss_total = _cumulative(profiles[True], (("sb3_jepa/common/loss.py", "jepa_prediction_loss"),))
    rows = []
    for name, (kind, functions) in PROFILE_GROUPS.items():
        if name.startswith("predictor"):
            seconds = _cumulative(profiles[True], functions, line=predictor_line)
        elif kind == "jepa":
            seconds = _cumulative(profiles[True], functions)
            if name.startswith("finite check"):  # _jepa_add_loss less the loss it calls
                seconds -= jepa_loss_total
        else:
            seconds = _cumulative(profiles[True], functions) - _cumulative(profiles[False], functions)
            if name.startswith("policy forward"):  # the capture hooks run inside it: counted in their own group
                seconds -= _cumulative(profiles[True], HOOKS)
        rows.append((name, seconds))
    extra = totals[True] - totals[False]
    rows.append(("not attributed (rollout noise, other calls)", extra - sum(seconds for _, seconds in rows)))
    rows.append(("total extra time of the JEPA run", extra))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["a2c-cnn", "ppo-cnn", "a2c-mlp", "ppo-mlp"])
    parser.add_argument("--atari-id", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--target", default=None, choices=TARGET_MODES, help="jepa_target (default: the algorithm's)")
    parser.add_argument("--segment-length", type=int, default=0, help="PPOJEPA's jepa_segment_length (0: its default)")
    parser.add_argument("--timesteps", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help="what a run's time is (see CLOCKS)")
    parser.add_argument("--profile", action="store_true", help="also print where JEPA's extra time goes (cProfile)")
    parser.add_argument("--update", action="store_true", help="time the update alone: train() on one fixed rollout")
    parser.add_argument(
        "--plain-optimizer",
        default="sb3",
        choices=["sb3", "flat"],
        help="the plain side's optimizer: SB3's default (torch's per-tensor step), or the flat one the JEPA side uses "
        "(the JEPA term's own cost, like for like)",
    )
    args = parser.parse_args(argv)
    available = pairs(args.atari_id)
    unknown = [name for name in args.pairs if name not in available]
    if unknown:
        parser.error(f"unknown pairs {unknown}; choose from {sorted(available)}")
    if args.timesteps <= 0 or args.repeats <= 0:
        parser.error("--timesteps and --repeats must be positive")
    if args.threads:
        th.set_num_threads(args.threads)

    print(
        f"device={args.device} target={args.target or 'default'} timesteps={args.timesteps} repeats={args.repeats} "
        f"clock={args.clock} plain-optimizer={args.plain_optimizer}"
    )
    if args.update:
        for name in args.pairs:
            ratios, update_seconds, minibatches = update_times(available[name], args)
            plain, jepa = min(update_seconds[False]), min(update_seconds[True])
            print(
                f"{name}: train() JEPA/plain median {statistics.median(ratios):.3f} "
                f"({' '.join(f'{r:.3f}' for r in ratios)}); smallest plain {1e6 * plain / minibatches:.0f} us, "
                f"JEPA {1e6 * jepa / minibatches:.0f} us per minibatch ({minibatches} per update): extra "
                f"{1e6 * (jepa - plain) / minibatches:.0f} us",
                flush=True,
            )
        return
    columns = ["pair", "median JEPA/plain", "ratios", "plain steps/s", "JEPA steps/s", "extra bytes max", "mean"]
    widths = [8, 17, 40, 13, 12, 15, 6]
    print(" | ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for name in args.pairs:
        pair = available[name]
        # Untimed first runs: torch's and the envs' one-time initialisation would otherwise land on one side
        for jepa in (False, True):
            timed_run(pair, jepa, args, seed=10_000)
        ratios, plain_times, jepa_times = [], [], []
        memory_ratios: list[float] = []
        for repeat in range(args.repeats):
            order = [False, True] if repeat % 2 == 0 else [True, False]
            times = {}
            for jepa in order:
                times[jepa], run_memory = timed_run(pair, jepa, args, seed=repeat)
                if jepa:
                    memory_ratios += run_memory.ratios
            ratios.append(times[True] / times[False])
            plain_times.append(times[False])
            jepa_times.append(times[True])
        row = [
            name,
            f"{statistics.median(ratios):.3f}",
            " ".join(f"{r:.3f}" for r in ratios),
            f"{args.timesteps / statistics.median(plain_times):.0f}",
            f"{args.timesteps / statistics.median(jepa_times):.0f}",
            f"{100 * max(memory_ratios, default=0.0):.2f}%",
            f"{100 * statistics.fmean(memory_ratios) if memory_ratios else 0.0:.2f}%",
        ]
        print(" | ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)), flush=True)
        if args.profile:
            rows = profile_pair(pair, args)
            extra = rows[-1][1]
            print(f"  profile of {name} (cProfile, one run each side, {args.timesteps} steps):")
            for group, seconds in rows:
                share = 100 * seconds / extra if extra > 0 else float("nan")
                print(f"    {group:<46} {seconds:8.3f} s  {share:6.1f}%", flush=True)


if __name__ == "__main__":
    main()
