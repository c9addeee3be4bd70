"""
Callbacks for the JEPA algorithms.

:class:`CollapseMetricsCallback` keeps the ``jepa/`` metrics of every update (or of every n-th) as rows in memory,
for a table, a CSV file or a plot: what the demo prints and what each run of the study writes.
"""

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from sb3_jepa.common.utils import check_positive_int


class CollapseMetricsCallback(BaseCallback):
    """
    Records, after every ``every``-th update, the ``jepa/`` values that update logged (``jepa/loss``,
    ``jepa/embedding_std``, ``jepa/effective_rank``, ``jepa/participation_ratio``, ``jepa/pred_cosine``, ...; see
    the README's "Logged metrics") with the timestep, in :attr:`rows`.

    They are read from SB3's logger when the next rollout starts (``train()`` has just recorded them and they are
    dumped only after that rollout) and once more when training ends, for the last update. Each update is recorded
    at most once.

    Example::

        callback = CollapseMetricsCallback()
        A2CJEPA("CnnPolicy", env).learn(100_000, callback=callback)
        pandas.DataFrame(callback.rows).plot(x="timesteps", y="jepa/effective_rank")

    :param every: record every ``every``-th update (1: all)
    :param verbose: verbosity level, as for SB3's callbacks
    """

    def __init__(self, every: int = 1, verbose: int = 0):
        super().__init__(verbose)
        self.every = check_positive_int("every", every)
        #: one dict per recorded update: ``timesteps`` and every ``jepa/`` key that update logged
        self.rows: list[dict[str, Any]] = []
        self._updates_seen = 0
        self._last_recorded_update: int | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        self._record_update()

    def _on_training_end(self) -> None:
        self._record_update()

    def _record_update(self) -> None:
        # The JEPA algorithms compute an update's jepa/ metrics when they are read (record_jepa_metrics)
        record = getattr(self.model, "record_jepa_metrics", None)
        if record is not None:
            record()
        values = self.logger.name_to_value
        update = self.model._n_updates
        # Before the first update, and after an update already seen (training stopped early by a callback)
        if "jepa/coef" not in values or update == self._last_recorded_update:
            return
        self._last_recorded_update = update
        self._updates_seen += 1
        if (self._updates_seen - 1) % self.every == 0:
            self.rows.append(self._row(values))

    def _row(self, values: dict[str, Any]) -> dict[str, Any]:
        """
        :param values: the logger's current values
        :return: the row recorded for this update (subclasses add their own columns)
        """
        row: dict[str, Any] = {"timesteps": self.num_timesteps}
        row.update({key: float(value) for key, value in values.items() if key.startswith("jepa/")})
        return row
