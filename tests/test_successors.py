"""Unit tests of the successor arithmetic (sb3_jepa.common.successors) on hand-made arrays."""

import numpy as np

from sb3_jepa.common import successors as S

UNKNOWN = S.UNKNOWN


def example() -> dict:
    """The module docstring's example: 2 envs x 3 steps; env 0 ends at step 1, env 1 at step 2 (the last)."""
    episode_starts = np.array([[1, 1], [0, 0], [1, 0]], dtype=np.float32)  # (n_steps, n_envs)
    return dict(episode_starts=episode_starts, final_dones=np.array([False, True]), terminal_rows=np.array([1, 5]))


def test_flat_rows_and_back():
    steps, envs = np.array([0, 2, 1, 2]), np.array([0, 0, 1, 1])
    rows = S.flat_rows(steps, envs, n_steps=3)
    np.testing.assert_array_equal(rows, [0, 2, 4, 5])
    back_steps, back_envs = S.steps_and_envs(rows, n_steps=3)
    np.testing.assert_array_equal(back_steps, steps)
    np.testing.assert_array_equal(back_envs, envs)


def test_episode_ended():
    ex = example()
    steps, envs = S.steps_and_envs(np.arange(6), n_steps=3)
    ended = S.episode_ended(steps, envs, ex["episode_starts"], ex["final_dones"])
    np.testing.assert_array_equal(ended, [0, 1, 0, 0, 0, 1])
    # Without the final observations the last step's end is not known
    np.testing.assert_array_equal(S.episode_ended(steps, envs, ex["episode_starts"], None), [0, 1, 0, 0, 0, 0])


def test_successor_addresses_of_the_example():
    ex = example()
    np.testing.assert_array_equal(S.successor_addresses(np.arange(6), **ex), [1, 6, 8, 4, 5, 7])
    # Any order, any subset
    np.testing.assert_array_equal(S.successor_addresses(np.array([5, 2, 0]), **ex), [7, 8, 1])


def test_successor_addresses_without_final_observations():
    ex = {**example(), "final_dones": None}
    np.testing.assert_array_equal(S.successor_addresses(np.arange(6), **ex), [1, 6, UNKNOWN, 4, 5, UNKNOWN])


def test_missing_terminal_observation_is_unknown():
    # env 0's episode ended at step 1 but the VecEnv gave no terminal observation for it
    ex = {**example(), "terminal_rows": np.array([5])}
    np.testing.assert_array_equal(S.successor_addresses(np.arange(6), **ex), [1, UNKNOWN, 7, 4, 5, 6])
    ex = {**example(), "terminal_rows": np.zeros(0, dtype=np.int64)}
    np.testing.assert_array_equal(S.successor_addresses(np.arange(6), **ex), [1, UNKNOWN, 6, 4, 5, UNKNOWN])


def test_truncation_and_termination_are_alike():
    # SB3's dones (hence episode_starts) hold both; a truncated episode's terminal observation is its successor
    # one env, 4 steps, ended after steps 0 and 2 (either way), then an episode that goes on
    episode_starts = np.array([[1], [1], [0], [1]], dtype=np.float32)
    addresses = S.successor_addresses(np.arange(4), episode_starts, np.array([False]), np.array([0, 2]))
    # terminal observations: addresses 4 (row 0), 5 (row 2); the final observation: 6
    np.testing.assert_array_equal(addresses, [4, 2, 5, 6])


def test_several_envs_final_addresses_follow_the_terminal_ones():
    # 3 envs x 2 steps, no episode end: the last steps' successors are the final observations, env by env
    episode_starts = np.zeros((2, 3), dtype=np.float32)
    addresses = S.successor_addresses(np.arange(6), episode_starts, np.zeros(3, dtype=bool), np.zeros(0, dtype=np.int64))
    np.testing.assert_array_equal(addresses, [1, 6, 3, 7, 5, 8])


def test_successor_chains():
    ex = example()
    chains = S.successor_chains(np.array([0, 1, 3]), 2, **ex)
    np.testing.assert_array_equal(chains, [[1, 6, 4], [6, UNKNOWN, 5]])
    # K = 3: a chain stops after a terminal or a final observation
    chains = S.successor_chains(np.array([0, 3]), 3, **ex)
    np.testing.assert_array_equal(chains, [[1, 4], [6, 5], [UNKNOWN, 7]])
    # K = 1 is successor_addresses
    np.testing.assert_array_equal(S.successor_chains(np.arange(6), 1, **ex), [S.successor_addresses(np.arange(6), **ex)])


def test_locate_in_minibatch_one_step():
    index, extra = S.locate_in_minibatch(np.array([[4, 1, 6]]), np.array([3, 0, 1]), n_rows=6)
    np.testing.assert_array_equal(index, [[3, 2, 4]])
    np.testing.assert_array_equal(extra, [4, 6])


def test_locate_in_minibatch_unknown_is_the_rows_own_index():
    index, extra = S.locate_in_minibatch(np.array([[UNKNOWN, 1, UNKNOWN]]), np.array([3, 0, 1]), n_rows=6)
    np.testing.assert_array_equal(index, [[0, 2, 2]])
    assert len(extra) == 0


def test_locate_in_minibatch_sends_each_extra_once_over_chains():
    # minibatch rows 0 and 3, K = 2: no wanted address is a minibatch row, and address 4 is wanted twice
    chains = np.array([[1, 4], [6, 4]])
    index, extra = S.locate_in_minibatch(chains, np.array([0, 3]), n_rows=6)
    np.testing.assert_array_equal(extra, [1, 4, 6])
    np.testing.assert_array_equal(index, [[2, 3], [4, 3]])


def test_gather_addressed():
    rows = np.arange(6)[:, None] * 10.0
    terminal = np.array([[100.0], [105.0]])
    final = np.array([[200.0], [201.0]])
    out = S.gather_addressed(np.array([4, 6, 8, 7, 9]), rows, terminal, final)
    np.testing.assert_array_equal(out[:, 0], [40, 100, 200, 105, 201])
    # no terminal observations: addresses from n_rows on are final ones
    np.testing.assert_array_equal(S.gather_addressed(np.array([6, 1]), rows, None, final)[:, 0], [200, 10])


def test_taken_rows():
    """The docstring's example: rows 0 and 3's chains for K = 2, in the module's worked example."""
    chains = S.successor_chains(np.array([0, 3]), 2, **example())
    np.testing.assert_array_equal(chains, [[1, 4], [6, 5]])
    rows, taken = S.taken_rows(chains, n_rows=6)
    np.testing.assert_array_equal(rows, [[1, 4], [0, 5]])
    np.testing.assert_array_equal(taken, [[True, True], [False, True]])
    rows, taken = S.taken_rows(np.array([[UNKNOWN, 8, 5]]), n_rows=6)  # unknown, a final observation, a row
    np.testing.assert_array_equal(rows, [[0, 0, 5]])
    np.testing.assert_array_equal(taken, [[False, False, True]])


def test_action_rows():
    np.testing.assert_array_equal(S.action_rows(np.array([[1, 6, 4], [6, UNKNOWN, 5]]), n_rows=6), [[1, 0, 4]])
    assert S.action_rows(np.array([[1, 2]]), n_rows=6).shape == (0, 2)


def test_segments():
    starts, ends = S.segment_bounds(5, 2, 2)
    np.testing.assert_array_equal(starts, [0, 2, 4, 5, 7, 9])
    np.testing.assert_array_equal(ends, [2, 4, 5, 7, 9, 10])
    starts, ends = S.segment_bounds(5, 2, 2, offset=1)
    np.testing.assert_array_equal(starts, [0, 1, 3, 5, 6, 8])
    np.testing.assert_array_equal(ends, [1, 3, 5, 6, 8, 10])
    np.testing.assert_array_equal(S.segment_rows(np.array([4, 0]), np.array([5, 2])), [4, 0, 1])
    # every row once, whatever the offset and the order of the segments
    for offset in range(3):
        starts, ends = S.segment_bounds(5, 3, 3, offset)
        order = np.random.default_rng(offset).permutation(len(starts))
        np.testing.assert_array_equal(np.sort(S.segment_rows(starts[order], ends[order])), np.arange(15))


def test_in_minibatch_only():
    np.testing.assert_array_equal(S.in_minibatch_only(np.array([[4, 1, 6]]), np.array([3, 0, 1])), [[UNKNOWN, 1, UNKNOWN]])
    chains = np.array([[1, 4], [2, UNKNOWN]])
    np.testing.assert_array_equal(S.in_minibatch_only(chains, np.array([0, 1, 2])), [[1, UNKNOWN], [2, UNKNOWN]])


def reference_locate(addresses: np.ndarray, minibatch_rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """locate_in_minibatch written as the plain loops its docstring describes: the reference of the fast one."""
    n_chain_steps, batch_size = addresses.shape
    position = {int(row): i for i, row in enumerate(minibatch_rows)}
    in_minibatch = [[0 <= a < n_rows and int(a) in position for a in chain] for chain in addresses]
    wanted = [int(a) for k, chain in enumerate(addresses) for i, a in enumerate(chain) if a >= 0 and not in_minibatch[k][i]]
    # One step: the extras in the order they are wanted; several: each once, sorted (as np.unique gives them)
    extras = wanted if n_chain_steps == 1 else sorted(set(wanted))
    index = np.tile(np.arange(batch_size), (n_chain_steps, 1))
    for k, chain in enumerate(addresses):
        for i, address in enumerate(chain):
            if in_minibatch[k][i]:
                index[k, i] = position[int(address)]
            elif address >= 0:
                index[k, i] = batch_size + extras.index(int(address))  # one step: each wanted once
    return index, np.asarray(extras, dtype=np.int64)


def test_locate_in_minibatch_with_scratch_space_matches_the_reference():
    rng = np.random.default_rng(0)
    n_rows = 40
    for dtype in (np.int32, np.int64):
        scratch = np.full(n_rows, UNKNOWN, dtype=dtype)
        for steps in (1, 3):
            for _ in range(30):
                rows = rng.permutation(n_rows)[:12]
                addresses = rng.integers(-1, n_rows + 8, size=(steps, 12))
                if steps == 1:  # one step: no two rows want the same observation
                    addresses[0] = np.where(addresses[0] >= 0, rng.permutation(n_rows + 8)[:12], -1)
                expected = reference_locate(addresses, rows, n_rows)
                for given in (None, scratch):
                    index, extra = S.locate_in_minibatch(addresses.astype(dtype), rows, n_rows, given)
                    np.testing.assert_array_equal(index, expected[0])
                    np.testing.assert_array_equal(extra, expected[1])
                assert (scratch == UNKNOWN).all()  # left as it was given, for the next minibatch


def test_known_last_moves_the_known_extras_after_the_others():
    # The docstring's example: rows [2, 5, 0] of the module's example want addresses [8, 7, 1]; finals start at 8
    index, extra = S.locate_in_minibatch(np.array([[8, 7, 1]]), np.array([2, 5, 0]), n_rows=6)
    index, extra, n_known = S.known_last(index, extra, batch_size=3, first_known=8)
    np.testing.assert_array_equal(index, [[5, 3, 4]])
    np.testing.assert_array_equal(extra, [7, 1, 8])
    assert n_known == 1
    # nothing known: unchanged
    index, extra = S.locate_in_minibatch(np.array([[4, 1, 6]]), np.array([3, 0, 1]), n_rows=6)
    same_index, same_extra, n_known = S.known_last(index, extra, batch_size=3, first_known=8)
    np.testing.assert_array_equal(same_index, index)
    np.testing.assert_array_equal(same_extra, extra)
    assert n_known == 0


def test_known_last_keeps_every_index_on_its_address():
    """Whatever the minibatch and K, each index still names the same observation, and the known ones are last."""
    rng = np.random.default_rng(1)
    n_rows, first_known = 40, 44  # 4 terminal observations (addresses 40..43), 5 finals (44..48)
    for k in (1, 2, 3):
        for _ in range(30):
            rows = rng.permutation(n_rows)[: rng.integers(1, 20)]
            chains = rng.integers(UNKNOWN, first_known + 5, size=(k, len(rows)))
            index, extra = S.locate_in_minibatch(chains, rows, n_rows)
            moved_index, moved_extra, n_known = S.known_last(index, extra, len(rows), first_known)
            before = np.concatenate([rows, extra])[index]
            after = np.concatenate([rows, moved_extra])[moved_index]
            np.testing.assert_array_equal(after, before)
            assert n_known == int((extra >= first_known).sum())
            assert (moved_extra[len(moved_extra) - n_known :] >= first_known).all()
            assert (moved_extra[: len(moved_extra) - n_known] < first_known).all()
