"""
Issue 17's open question, measured: why does the return planner (``planner_prior_return``) do well on some models
and badly on others? For each model and each of the evaluation's start/goal pairs, score random action sequences
two ways and compare their rankings:

- predicted: the planner's own return estimate ``G = sum_{t<H} gamma^t R(z_t, a_t) + gamma^H V(z_H)`` on ``W``'s
  latents (:meth:`sb3_jepa.planning.LatentPlanner.value`, ``value_estimate="return"``);
- true: the same sum with the environment's rewards along the sequence, played in a copy of the environment, and
  the critic's value of the true last observation (``V(E(s_H))``; 0 after the goal is reached).

Per pair: the Spearman rank correlation of the two over the candidates, and the spread (std) of each. Also the
correlation of the predicted and the true sum of rewards alone, and of the true discounted rewards with the true
geodesic distance gained (the shaped reward telescopes: its discounted sum is nearly the distance gained).

    python -m benchmarks.return_ranking runs/study17r jepa_rl/seed3 jepa_rl/seed4 \
        "jepa_rl:predictor_residual=True/seed0" ... > docs/results/planning/diagnostics/return_ranking.txt

(the runs are folders of a ``python -m sb3_jepa.study run`` output holding ``zoo/model.zip``; the result of
2026-12-04 is in docs/results/planning.md)
"""

import argparse
import copy

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from scipy.stats import spearmanr

import sb3_jepa  # noqa: F401  (registers the environments)
from benchmarks import study_runs
from benchmarks.study_runs import ENV_ID
from sb3_jepa.envs.two_rooms import TwoRoomsEnv
from sb3_jepa.planning import LatentPlanner
from sb3_jepa.planning.evaluate import make_pairs

HORIZON = 12


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    study_runs.add_arguments(parser)
    parser.add_argument("--candidates", type=int, default=64, help="random action sequences per pair (>= 3)")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.candidates < 3:
        parser.error("--pairs must be >= 1 and --candidates >= 3 (a rank correlation needs them)")
    study, runs, n_pairs, n_candidates = args.study, args.runs, args.pairs, args.candidates
    pairs = make_pairs(ENV_ID, n_pairs, seed=0)  # the evaluation's pairs (pair seed 0)
    print(f"{ENV_ID}, horizon {HORIZON}, {n_candidates} uniformly random action sequences per pair, {n_pairs} pairs")
    print(
        "run | rank corr. G (pred vs true) | rank corr. rewards | std G pred | std G true "
        "| corr. true rewards vs distance gained"
    )
    for run in runs:
        model = study_runs.load(study, run)
        planner = LatentPlanner(model, horizon=HORIZON, value_estimate="return", value_weight=1.0, prior="policy")
        world, gamma = planner.world, model.gamma
        discounts = gamma ** np.arange(HORIZON + 1)
        rng = np.random.default_rng(0)
        env = gym.make(ENV_ID).unwrapped
        assert isinstance(env, TwoRoomsEnv) and isinstance(env.action_space, spaces.Discrete)
        n_actions = int(env.action_space.n)
        stats = []
        for pair in pairs:
            obs, _ = env.reset(seed=0, options=dict(start=pair["start"], goal=pair["goal"]))
            actions = rng.integers(n_actions, size=(n_candidates, HORIZON))
            true_rewards = np.zeros((n_candidates, HORIZON))
            last_obs, done_at_end, gained = [], np.zeros(n_candidates, dtype=bool), np.zeros(n_candidates)
            for c in range(n_candidates):
                sim = copy.deepcopy(env)
                start_distance = sim.geodesic_distance(sim.position, sim.goal)
                current = obs
                for t in range(HORIZON):
                    current, reward, terminated, _, _ = sim.step(int(actions[c, t]))
                    true_rewards[c, t] = reward
                    if terminated:
                        done_at_end[c] = True
                        break
                gained[c] = start_distance - sim.geodesic_distance(sim.position, sim.goal)
                last_obs.append(current)
            with th.no_grad(), world.eval_mode():
                z = world.encode(model.policy.obs_to_tensor(obs)[0])
                features = world.action_features(th.as_tensor(actions.reshape(-1))).reshape(1, n_candidates, HORIZON, -1)
                latents = world.rollout(z.expand(n_candidates, -1), features[0]).unsqueeze(0)
                predicted = planner.value(z, features, latents)[0].numpy()
                # the predicted rewards alone: G minus its terminal term
                terminal = world.V(world.readout(latents[:, :, -1], z[:, None])).numpy()[0]
                predicted_rewards = predicted - discounts[HORIZON] * terminal
                v_true = world.V(world.encode(model.policy.obs_to_tensor(np.stack(last_obs))[0])).numpy()
            true_disc = (true_rewards * discounts[:HORIZON]).sum(axis=1)
            true = true_disc + discounts[HORIZON] * np.where(done_at_end, 0.0, v_true)
            stats.append(
                (
                    spearmanr(predicted, true).statistic,
                    spearmanr(predicted_rewards, true_disc).statistic,
                    predicted.std(),
                    true.std(),
                    spearmanr(true_disc, gained).statistic,
                )
            )
        s = np.nanmean(np.array(stats, dtype=float), axis=0)
        print(f"{run} | {s[0]:.2f} | {s[1]:.2f} | {s[2]:.2f} | {s[3]:.2f} | {s[4]:.2f}")


if __name__ == "__main__":
    main()
