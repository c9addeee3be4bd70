"""
What a linear probe can read of Two Rooms' distractor dots at all (issue 20): the same probes as the study's
(held-out episodes, ridge), fitted on the raw pixels (4 x 4 average-pooled) and on an untrained NatureCNN's
embeddings, over 5000 steps of random actions (the dots move the same under any policy), and, given saved
models, on their embeddings of the same steps.

    python docs/results/simplicity_tworooms/probe_ceiling.py TwoRoomsDiscreteDistractorsPredictable-v0 [model.zip ...]

Each line: the per-dot R^2 (``distractor_r2``, each dot's own x and y), the centroid's (``distractor_centroid_r2``)
and the task's (agent and goal positions).
"""

import argparse
import sys

import numpy as np
import torch as th
from rl_zoo3.exp_manager import ExperimentManager

import sb3_jepa.zoo
from sb3_jepa.common.probes import distractor_probes
from sb3_jepa.zoo import ALGORITHMS

STEPS = 5000


def main(env_id: str, model_paths: list[str]) -> None:
    th.set_num_threads(1)
    sb3_jepa.zoo.register()
    # The zoo entry's wrappers, and an untrained model of its architecture (seed 0)
    manager = ExperimentManager(
        argparse.Namespace(), "ppo_jepa", env_id, "/tmp/probe_ceiling", n_timesteps=64, hyperparams={}, seed=0,
        verbose=0, eval_freq=-1,
    )  # fmt: skip
    setup = manager.setup_experiment()
    assert setup is not None
    untrained = setup[0]
    env = manager.create_envs(1, eval_env=True)
    rng = np.random.default_rng(0)
    observations, states, episodes = [], [], []
    obs, info, episode = env.reset(), env.unwrapped.reset_infos[0], 0
    for _ in range(STEPS):
        observations.append(obs.copy()), states.append(info["state"]), episodes.append(episode)
        obs, _, dones, infos = env.step(np.array([rng.integers(env.action_space.n)]))
        info = env.unwrapped.reset_infos[0] if dones[0] else infos[0]
        episode += int(dones[0])
    images, states_array, groups = np.concatenate(observations), np.array(states), np.array(episodes)
    n_distractor_vars, objects = len(info["distractor_state"]), info["distractor_objects"]
    print(f"{env_id}: {STEPS} steps, {episode + 1} episodes, observations {images.shape}")

    def embed(model) -> np.ndarray:
        with th.no_grad():
            tensor, _ = model.policy.obs_to_tensor(images)
            return model.policy.extract_features(tensor, model.policy.pi_features_extractor).flatten(1).numpy()

    pixels = th.nn.functional.avg_pool2d(th.as_tensor(images, dtype=th.float32), 4).flatten(1).numpy()
    named = [("raw pixels (4 x 4 pooled)", pixels), ("untrained NatureCNN", embed(untrained))]
    named += [(path, embed(ALGORITHMS["ppo_jepa"].load(path, device="cpu"))) for path in model_paths]
    for name, z in named:
        scores = distractor_probes(z, states_array, n_distractor_vars, groups, exchangeable_objects=objects)
        print(
            f"  {name}: per-dot R^2 {scores['distractor_r2']:.2f}, centroid R^2 {scores['distractor_centroid_r2']:.2f}, "
            f"task R^2 {scores['task_r2']:.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
