"""
Where ``s_{t+1}`` is: the index arithmetic of the JEPA rollout buffers, as pure numpy functions.

Three numberings are used, each with its own name:

- **row**: SB3's flat row of a transition once ``swap_and_flatten`` has put each env's steps together:
  ``row = env * n_steps + step`` (:func:`flat_rows`, :func:`steps_and_envs`).
- **address**: where an observation is stored, in the concatenation
  ``[buffer rows (n_rows) | terminal observations (n_terminal, sorted by row) | final observations (n_envs)]``;
  :data:`UNKNOWN` (-1) where it is not known (an episode end without ``infos["terminal_observation"]``, or the
  rollout's last step of a buffer filled without its final observations). :func:`successor_addresses` gives the
  address of ``s_{t+1}`` of each row, :func:`successor_chains` those of ``s_{t+1}..s_{t+K}``.
- **index**: a row of ``cat(minibatch observations, extra observations)``, what the loss reads:
  :func:`locate_in_minibatch` finds which successors are rows of the minibatch already and which must be sent along
  as extras (each once).

A worked example used in the docstrings: 2 envs x 3 steps (``n_rows = 6``); env 0's episode ends at step 1 (its
terminal observation recorded), env 1's at step 2, the rollout's last step (terminal recorded too)::

    step:          0  1  2
    env 0 rows:    0  1  2       episode_starts[:, 0] = [1, 0, 1]
    env 1 rows:    3  4  5       episode_starts[:, 1] = [1, 0, 0]      final_dones = [False, True]
    terminal_rows = [1, 5]       addresses 6 (of row 1) and 7 (of row 5); final observations: addresses 8, 9

    successor addresses of rows 0..5:  [1, 6, 8, 4, 5, 7]
"""

import numpy as np

#: The address of an observation that is not known (its transition is masked out of the loss)
UNKNOWN = -1


def flat_rows(steps: np.ndarray, envs: np.ndarray, n_steps: int) -> np.ndarray:
    """
    SB3's flat row of step ``t`` of env ``e`` after ``swap_and_flatten``: ``e * n_steps + t``.

    Example: ``n_steps = 3``: step 2 of env 1 is row 5.

    :param steps: the steps ``t``, in ``[0, n_steps)``
    :param envs: the envs ``e``
    :param n_steps: the buffer's steps per env (``buffer_size``)
    :return: the rows
    """
    return np.asarray(envs) * n_steps + np.asarray(steps)


def steps_and_envs(rows: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """
    The inverse of :func:`flat_rows`.

    Example: ``n_steps = 3``: rows ``[0, 4, 5]`` are steps ``[0, 1, 2]`` of envs ``[0, 1, 1]``.

    :param rows: flat rows
    :param n_steps: the buffer's steps per env
    :return: ``(steps, envs)``
    """
    rows = np.asarray(rows)
    return rows % n_steps, rows // n_steps


def episode_ended(
    steps: np.ndarray, envs: np.ndarray, episode_starts: np.ndarray, final_dones: np.ndarray | None
) -> np.ndarray:
    """
    Whether step ``t`` of env ``e`` ended its episode (terminated or truncated). SB3 stores ``dones[t]`` as
    ``episode_starts[t + 1]``, and the last step's as the algorithm's ``_last_episode_starts`` (``final_dones``).

    Example (the module's): ``episode_starts[:, 0] = [1, 0, 1]`` (env 0 was reset before step 0 and after step 1),
    ``final_dones = [False, True]``: steps ``[0, 1, 2, 2]`` of envs ``[0, 0, 0, 1]`` (rows 0, 1, 2, 5) give
    ``[F, T, F, T]``.

    :param steps: the steps ``t`` (see :func:`steps_and_envs`)
    :param envs: their envs ``e``
    :param episode_starts: SB3's ``episode_starts``, shape ``(n_steps, n_envs)`` (never flattened by SB3)
    :param final_dones: whether the last step ended each env's episode, shape ``(n_envs,)``; None when the final
        observations are not known (a buffer filled by hand): the last step then counts as not ended, and its
        successor is :data:`UNKNOWN` (see :func:`successor_addresses`)
    :return: a bool per step
    """
    n_steps = episode_starts.shape[0]
    last = steps == n_steps - 1
    ended = episode_starts[np.minimum(steps + 1, n_steps - 1), envs].astype(bool)
    if final_dones is None:
        return ended & ~last
    return np.where(last, final_dones[envs], ended)


def successor_addresses(
    rows: np.ndarray, episode_starts: np.ndarray, final_dones: np.ndarray | None, terminal_rows: np.ndarray
) -> np.ndarray:
    """
    The address of ``s_{t+1}`` of each row:

    - the next row ``row + 1``, where the episode goes on and ``t`` is not the rollout's last step;
    - ``n_rows + n_terminal + env`` (a final observation) for the last step, where the episode goes on;
    - ``n_rows + k`` (the k-th terminal observation) where the episode ended at ``t`` and ``terminal_rows[k]`` is
      ``row``;
    - :data:`UNKNOWN` where the episode ended without a terminal observation, or for the last step when the final
      observations are not known (``final_dones`` None).

    Example (the module's): rows ``[0, 1, 2, 3, 4, 5]`` give ``[1, 6, 8, 4, 5, 7]``; without final
    observations, row 2 gives -1 and row 5 too (its end is then not known).

    :param rows: flat rows (each in ``[0, n_rows)``)
    :param episode_starts: SB3's ``episode_starts``, shape ``(n_steps, n_envs)``
    :param final_dones: as for :func:`episode_ended`
    :param terminal_rows: the rows whose terminal observation is kept, sorted (address ``n_rows + k`` is
        ``terminal_rows[k]``'s)
    :return: the addresses, shape of ``rows`` (int64)
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_steps, n_envs = episode_starts.shape
    n_rows, n_terminal = n_steps * n_envs, len(terminal_rows)
    steps, envs = steps_and_envs(rows, n_steps)
    last = steps == n_steps - 1
    final_address = np.full_like(rows, UNKNOWN) if final_dones is None else n_rows + n_terminal + envs
    going_on = np.where(last, final_address, rows + 1)
    position = np.searchsorted(terminal_rows, rows)
    if n_terminal > 0:
        has_terminal = terminal_rows[np.minimum(position, n_terminal - 1)] == rows
    else:
        has_terminal = np.zeros(len(rows), dtype=bool)
    # An episode end without a terminal observation (an unusual VecEnv) stays unknown
    ended = episode_ended(steps, envs, episode_starts, final_dones)
    return np.where(ended, np.where(has_terminal, n_rows + position, UNKNOWN), going_on)


def successor_chains(
    rows: np.ndarray,
    prediction_steps: int,
    episode_starts: np.ndarray,
    final_dones: np.ndarray | None,
    terminal_rows: np.ndarray,
) -> np.ndarray:
    """
    The addresses of ``s_{t+1}, ..., s_{t+K}`` of each row: ``chains[k]`` is where ``s_{t+k+1}`` is. A chain stops
    (:data:`UNKNOWN` from there on) after an episode end or the rollout's end: a terminal or final observation has
    no successor in the buffer.

    Example (the module's), K = 2: rows ``[0, 1, 3]`` give ``[[1, 6, 4], [6, -1, 5]]`` (row 0: s_1 is row 1,
    whose successor is terminal address 6; row 1's chain ends with its terminal observation).

    :param rows: flat rows
    :param prediction_steps: K >= 1
    :param episode_starts: as for :func:`successor_addresses`
    :param final_dones: as for :func:`successor_addresses`
    :param terminal_rows: as for :func:`successor_addresses`
    :return: the addresses, shape ``(K, len(rows))``
    """
    n_rows = episode_starts.size
    chains = [successor_addresses(rows, episode_starts, final_dones, terminal_rows)]
    for _ in range(1, prediction_steps):
        previous = chains[-1]
        in_buffer = (previous >= 0) & (previous < n_rows)
        following = np.full(len(previous), UNKNOWN, dtype=np.int64)
        following[in_buffer] = successor_addresses(previous[in_buffer], episode_starts, final_dones, terminal_rows)
        chains.append(following)
    return np.stack(chains)


def locate_in_minibatch(
    addresses: np.ndarray, minibatch_rows: np.ndarray, n_rows: int, row_positions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """
    Which row of ``cat(minibatch observations, extra observations)`` holds each wanted observation, and which
    addresses the extras must be: a successor that is a row of the minibatch is not sent again. Where an address is
    :data:`UNKNOWN` the index is the wanted row's own (the loss masks it). With several steps (``K > 1``) an
    observation wanted by several chains is sent once; with one step no two rows want the same observation.

    Example (the module's), K = 1: the minibatch holds rows ``[3, 0, 1]``, whose successors are addresses
    ``[[4, 1, 6]]``: row 1 is minibatch row 2, addresses 4 and 6 become extras 0 and 1 (indices 3 and 4)::

        index = [[3, 2, 4]],  extra addresses = [4, 6]

    :param addresses: the wanted addresses, shape ``(K, batch)`` (:func:`successor_chains`)
    :param minibatch_rows: the minibatch's flat rows, shape ``(batch,)``, distinct
    :param n_rows: the buffer's rows (addresses below it are rows)
    :param row_positions: scratch space of ``n_rows`` integer entries, all :data:`UNKNOWN`, that the caller keeps
        between calls (and that is left all :data:`UNKNOWN` again): each row's position in the minibatch is then a
        lookup, O(batch), instead of a sorted search, O(batch log batch); the result is the same
    :return: the indices, shape ``(K, batch)``, and the addresses of the extra observations in their order
    """
    n_chain_steps, batch_size = addresses.shape
    wanted = addresses.ravel()
    valid = wanted >= 0
    in_rows = valid & (wanted < n_rows)
    if row_positions is None:
        row_positions = np.full(n_rows, UNKNOWN, dtype=np.int64)
    row_positions[minibatch_rows] = np.arange(batch_size)
    try:
        # where each wanted row is in the minibatch (UNKNOWN: not in it, or not a row)
        position = np.where(in_rows, row_positions[np.where(in_rows, wanted, 0)], UNKNOWN)
    finally:
        row_positions[minibatch_rows] = UNKNOWN
    in_minibatch = position >= 0
    needs_extra = valid & ~in_minibatch
    if n_chain_steps > 1:
        extra_addresses, extra_position = np.unique(wanted[needs_extra], return_inverse=True)
    else:
        extra_addresses, extra_position = wanted[needs_extra], np.arange(int(needs_extra.sum()))
    index = np.tile(np.arange(batch_size, dtype=np.int64), n_chain_steps)
    index[in_minibatch] = position[in_minibatch]
    index[needs_extra] = batch_size + extra_position
    return index.reshape(n_chain_steps, batch_size), extra_addresses


def known_last(
    index: np.ndarray, extra_addresses: np.ndarray, batch_size: int, first_known: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """
    Reorder the extras so that those whose embedding is already known (addresses from ``first_known`` on: the
    final observations, which SB3's last value estimate of the rollout encoded) come after the others, each group
    in its own order, and point :func:`locate_in_minibatch`'s indices at the new positions. The loss then encodes
    the first ``len(extra_addresses) - n_known`` extras and appends the known embeddings.

    Example (the module's), K = 1: the minibatch holds rows ``[2, 5, 0]``, whose successors are addresses
    ``[[8, 7, 1]]``; :func:`locate_in_minibatch` gives ``index = [[3, 4, 5]]`` and extras ``[8, 7, 1]``. The final
    observations start at address 8 (6 rows, 2 terminal observations): address 8 moves last, so the extras are
    ``[7, 1, 8]`` and the indices ``[[5, 3, 4]]``, with one known::

        index = [[5, 3, 4]],  extra addresses = [7, 1, 8],  n_known = 1

    :param index: :func:`locate_in_minibatch`'s indices, shape ``(K, batch)`` (rows of
        ``cat(minibatch, extras)``); those below ``batch_size`` are minibatch rows and stay
    :param extra_addresses: its extra addresses, in their order
    :param batch_size: the minibatch's rows
    :param first_known: the first address whose embedding is known (every address from it on is)
    :return: the indices and the extra addresses, reordered, and how many extras (the last ones) are known
    """
    known = extra_addresses >= first_known
    n_known = int(known.sum())
    if n_known == 0:
        return index, extra_addresses, 0
    order = np.argsort(known, kind="stable")  # the unknown ones first, then the known, each group in its order
    new_position = np.empty_like(order)
    new_position[order] = np.arange(len(order))
    is_extra = index >= batch_size
    index = index.copy()
    index[is_extra] = batch_size + new_position[index[is_extra] - batch_size]
    return index, extra_addresses[order], n_known


def gather_addressed(
    addresses: np.ndarray, rows: np.ndarray, terminal: np.ndarray | None, final: np.ndarray | None
) -> np.ndarray:
    """
    The observations at known addresses.

    Example (the module's): addresses ``[4, 6, 8]`` are ``rows[4]``, ``terminal[0]`` and ``final[0]``.

    :param addresses: addresses, each ``>= 0``
    :param rows: the buffer's flattened observations, shape ``(n_rows, *obs_shape)``
    :param terminal: the terminal observations in the order of their rows (None if there are none)
    :param final: one observation per env after the rollout's last step (None if not known)
    :return: the observations, shape ``(len(addresses), *obs_shape)``
    """
    n_rows = len(rows)
    n_terminal = 0 if terminal is None else len(terminal)
    in_rows = addresses < n_rows
    in_terminal = ~in_rows & (addresses < n_rows + n_terminal)
    in_final = addresses >= n_rows + n_terminal
    out = np.empty((len(addresses), *rows.shape[1:]), dtype=rows.dtype)
    out[in_rows] = rows[addresses[in_rows]]
    if terminal is not None:
        out[in_terminal] = terminal[addresses[in_terminal] - n_rows]
    if final is not None:
        out[in_final] = final[addresses[in_final] - n_rows - n_terminal]
    return out


def taken_rows(addresses: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Where each address is a buffer row, that row: an action was taken from that observation and a reward given.
    Terminal and final observations (addresses from ``n_rows`` on) and unknown ones have neither: their row is 0
    and they are masked.

    Example (the module's): the chains of rows 0 and 3 for K = 2, ``[[1, 4], [6, 5]]``, give rows ``[[1, 4], [0, 5]]``
    and the mask ``[[True, True], [False, True]]`` (address 6 is row 1's terminal observation).

    :param addresses: addresses, e.g. :func:`successor_chains`, shape ``(K, batch)``
    :param n_rows: the buffer's rows
    :return: the rows (0 where masked) and the mask, both shaped as ``addresses``
    """
    taken = (addresses >= 0) & (addresses < n_rows)
    return np.where(taken, addresses, 0), taken


def action_rows(chains: np.ndarray, n_rows: int) -> np.ndarray:
    """
    For the K-step loss: the rows whose actions lead from ``s_{t+k}`` to ``s_{t+k+1}`` for k = 1..K-1, i.e. the
    chain's addresses that are buffer rows (0 elsewhere: those steps are masked, any action will do).

    Example (the module's): chains ``[[1, 6, 4], [6, -1, 5]]`` give ``[[1, 0, 4]]`` (the actions at rows 1 and 4).

    :param chains: :func:`successor_chains`, shape ``(K, batch)``
    :param n_rows: the buffer's rows
    :return: rows, shape ``(K - 1, batch)``
    """
    return taken_rows(chains[:-1], n_rows)[0]


def in_minibatch_only(addresses: np.ndarray, minibatch_rows: np.ndarray) -> np.ndarray:
    """
    The addresses that are rows of the minibatch, :data:`UNKNOWN` elsewhere: with them the JEPA term uses only
    transitions whose successor the minibatch's encoder pass encodes anyway (no extra observation at all).

    Example (the module's): the minibatch holds rows ``[3, 0, 1]``, whose successors are ``[[4, 1, 6]]``: only
    row 0's is a minibatch row, so ``[[-1, 1, -1]]``.

    :param addresses: addresses, shape ``(K, batch)`` (:func:`successor_chains`)
    :param minibatch_rows: the minibatch's flat rows
    :return: the addresses, masked
    """
    return np.where(np.isin(addresses, minibatch_rows), addresses, UNKNOWN)


def segment_bounds(n_steps: int, n_envs: int, length: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """
    The segments of ``length`` consecutive steps of one env that tile the buffer, as flat rows ``[start, end)``:
    each env's steps are cut at ``offset, offset + length, ...`` (so with an offset its first segment is shorter,
    and its last one wherever ``length`` does not divide what remains).

    Example: ``n_steps = 5, n_envs = 2, length = 2`` give starts ``[0, 2, 4, 5, 7, 9]`` and ends
    ``[2, 4, 5, 7, 9, 10]``; with ``offset = 1``, starts ``[0, 1, 3, 5, 6, 8]`` and ends ``[1, 3, 5, 6, 8, 10]``.

    :param n_steps: the buffer's steps per env
    :param n_envs: the buffer's envs
    :param length: steps per segment
    :param offset: where the first cut is, in ``[0, length)`` (0: at the first step, no short first segment)
    :return: ``(starts, ends)``, env by env
    """
    cuts = np.arange(offset, n_steps, length)
    bounds = np.unique(np.concatenate([[0], cuts, [n_steps]]))  # per env, including both ends
    env_starts = np.arange(n_envs)[:, None] * n_steps
    return (env_starts + bounds[None, :-1]).ravel(), (env_starts + bounds[None, 1:]).ravel()


def segment_rows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """
    All rows of the segments ``[start, end)``, in the order given.

    Example: ``starts = [4, 0], ends = [5, 2]`` give ``[4, 0, 1]``.

    :param starts: segment starts (:func:`segment_bounds`, in any order)
    :param ends: their ends
    :return: the rows
    """
    return np.concatenate([np.arange(start, end) for start, end in zip(starts, ends, strict=True)])
