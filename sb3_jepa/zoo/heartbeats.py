"""
Searches that survive a lost worker: what :func:`sb3_jepa.zoo.retry_lost_trials` and
:func:`sb3_jepa.zoo.refuse_unfinished_trials` use.

An ``-optimize`` worker on an RDB storage (``--storage postgresql://...``, any URL that does not end with ``.log``)
records a heartbeat of its running trial every :data:`DEFAULT_HEARTBEAT_INTERVAL` seconds (Optuna's
``RDBStorage(heartbeat_interval=...)``). A trial whose heartbeat is older than the grace period belongs to a worker
that is gone (killed, preempted, its machine lost): the next worker to look fails it and queues one retry of it with
the same parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``), which the next trial of any worker runs.

The settings come from environment variables, read (and checked) by :func:`heartbeat_settings` when a search
starts: :data:`HEARTBEAT_INTERVAL_VARIABLE`, :data:`GRACE_PERIOD_VARIABLE` and :data:`TRIAL_RETRIES_VARIABLE`.

Optuna is imported when these run, never when this module loads (the import hook loads it while rl-zoo3 loads).
"""

import contextlib
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

#: seconds between two heartbeats of a running trial; ``0`` turns heartbeats (and retries) off
HEARTBEAT_INTERVAL_VARIABLE = "SB3_JEPA_HEARTBEAT_INTERVAL"
#: seconds without a heartbeat after which a running trial is failed (and retried); more than the interval
GRACE_PERIOD_VARIABLE = "SB3_JEPA_GRACE_PERIOD"
#: how many times one trial is retried after its worker was lost; ``0``: failed, never retried
TRIAL_RETRIES_VARIABLE = "SB3_JEPA_TRIAL_RETRIES"

#: A trial lasts minutes (a search's budget is 1e4 to 1e6 steps per trial), so a beat a minute costs the database one
#: row update per worker and minute, and is still short next to a trial. 60 s is Optuna's documented example.
DEFAULT_HEARTBEAT_INTERVAL = 60
#: The grace period defaults to three intervals (180 s at the default interval): a worker must miss three beats in a
#: row (a database hiccup, a loaded machine) before its trial is declared lost. Optuna's own default is two.
DEFAULT_GRACE_INTERVALS = 3
#: One retry: a worker lost to preemption or a dead machine gets its trial run again once; a trial whose second run
#: loses its worker too is more likely to kill its workers itself (memory exhausted by its hyperparameters), and
#: retrying it again would take down another worker each time.
DEFAULT_TRIAL_RETRIES = 1


@dataclass(frozen=True)
class HeartbeatSettings:
    """
    :param heartbeat_interval: seconds between heartbeats; 0 when heartbeats are off
    :param grace_period: seconds without a heartbeat after which a running trial is failed
    :param trial_retries: retries of a failed stale trial (Optuna's ``max_retry``)
    """

    heartbeat_interval: int
    grace_period: int
    trial_retries: int

    @property
    def enabled(self) -> bool:
        """:return: whether heartbeats (and so the failing and retrying of lost trials) are on"""
        return self.heartbeat_interval > 0

    def storage(self, url: str) -> "optuna.storages.RDBStorage":
        """
        :param url: an SQLAlchemy URL, as given to rl-zoo3's ``--storage``
        :return: Optuna's RDB storage on it, with these heartbeats and the retry of lost trials
        """
        import inspect

        import optuna

        # Optuna 4.9 renamed RDBStorage's failed_trial_callback (deprecated since): the new name where it exists
        parameters = inspect.signature(optuna.storages.RDBStorage).parameters
        name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters else "failed_trial_callback"
        with _quietly():  # heartbeat_interval and the retry callback are "experimental" in Optuna, since 2.8
            callback: dict[str, Any] = {}
            if self.trial_retries > 0:
                callback[name] = _retry_callback_class()(max_retry=self.trial_retries)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period, **callback
            )


def _whole_number(environ: Mapping[str, str], name: str, default: int, minimum: int, allowed: str) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name} must be {allowed}, got {environ[name]!r}")
    return value


def heartbeat_settings(environ: Mapping[str, str] | None = None) -> HeartbeatSettings:
    """
    Read the settings from the environment, the defaults standing for unset (or empty) variables:
    :data:`HEARTBEAT_INTERVAL_VARIABLE` (:data:`DEFAULT_HEARTBEAT_INTERVAL`), :data:`GRACE_PERIOD_VARIABLE`
    (:data:`DEFAULT_GRACE_INTERVALS` heartbeat intervals) and :data:`TRIAL_RETRIES_VARIABLE`
    (:data:`DEFAULT_TRIAL_RETRIES`).

    :param environ: the environment (``os.environ`` by default)
    :return: the settings
    :raises ValueError: naming the variable and what it allows, if one is not a whole number in its range, or if the
        grace period is not longer than the heartbeat interval (a live worker's trial would be failed between beats)
    """
    environ = os.environ if environ is None else environ
    interval = _whole_number(
        environ, HEARTBEAT_INTERVAL_VARIABLE, DEFAULT_HEARTBEAT_INTERVAL, 0,
        "a whole number of seconds, 1 or more (or 0 to turn heartbeats off)",
    )  # fmt: skip
    grace = _whole_number(
        environ, GRACE_PERIOD_VARIABLE, DEFAULT_GRACE_INTERVALS * interval, interval + 1,
        f"a whole number of seconds longer than the heartbeat interval ({interval} s, {HEARTBEAT_INTERVAL_VARIABLE})",
    )  # fmt: skip
    retries = _whole_number(
        environ, TRIAL_RETRIES_VARIABLE, DEFAULT_TRIAL_RETRIES, 0,
        "a whole number, 0 or more (0: a lost worker's trial is failed, never retried)",
    )  # fmt: skip
    return HeartbeatSettings(interval, grace, retries)


def _retry_callback_class() -> Any:
    """:return: Optuna's ``RetryHeartbeatStaleTrialCallback``, named ``RetryFailedTrialCallback`` before Optuna 4.9"""
    import optuna

    return getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning (heartbeats, their retry callback and fail_stale_trials carry one)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def fail_stale_trials(study: "optuna.Study") -> None:
    """
    Fail the study's running trials whose heartbeat is older than the grace period, and queue their retries (Optuna's
    ``optuna.storages.fail_stale_trials``). Nothing happens on a storage without heartbeats.

    :param study: the study
    """
    import optuna

    with _quietly():
        optuna.storages.fail_stale_trials(study)


class MaxTrialsCallback:
    """
    Optuna's ``MaxTrialsCallback`` (stop the search once the study holds ``n_trials`` trials in ``states``), for a
    study whose storage has heartbeats: before counting, a lost worker's trial is failed (and its retry queued), so it
    no longer counts as running; and when the count is only reached thanks to running trials, it waits for them (at
    most a grace period and a heartbeat interval), so that a lost worker's trial, once stale, is failed and its retry
    run by this worker rather than left running in the study forever.

    :param n_trials: the number of trials to stop at (rl-zoo3's ``--max-total-trials``)
    :param states: the states counted (rl-zoo3 counts ``COMPLETE``, ``RUNNING`` and ``PRUNED``)
    :param settings: the storage's heartbeat settings
    """

    def __init__(
        self, n_trials: int, states: "Sequence[optuna.trial.TrialState] | None" = None, *, settings: HeartbeatSettings
    ) -> None:
        from optuna.trial import TrialState

        self._n_trials = n_trials
        self._states = tuple(states) if states is not None else (TrialState.COMPLETE,)
        self._settings = settings

    def __call__(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        from optuna.trial import TrialState

        deadline = time.monotonic() + self._settings.grace_period + self._settings.heartbeat_interval
        while True:
            fail_stale_trials(study)
            counted = study.get_trials(deepcopy=False, states=self._states)
            if len(counted) < self._n_trials:
                return  # not there yet (or no longer: a stale trial was failed; its retry is the next trial asked)
            if not any(other.state == TrialState.RUNNING for other in counted) or time.monotonic() >= deadline:
                study.stop()
                return
            time.sleep(self._settings.heartbeat_interval)


class OptunaWithHeartbeats:
    """
    The ``optuna`` module, except that :meth:`create_study` opens an RDB storage given as a URL with heartbeats (and
    fails the study's stale trials at once). Everything else is Optuna's own.

    :param optuna_module: the ``optuna`` module
    :param settings: the heartbeat settings
    """

    def __init__(self, optuna_module: Any, settings: HeartbeatSettings) -> None:
        self._optuna = optuna_module
        self._settings = settings

    def create_study(self, *args: Any, storage: Any = None, **kwargs: Any) -> "optuna.Study":
        """
        ``optuna.create_study``, with a URL ``storage`` (not a ``.log`` journal file) replaced by
        :meth:`HeartbeatSettings.storage` on it. The stale trials of the study (of workers lost since the last worker
        looked) are failed and their retries queued right away, before rl-zoo3 counts the running trials toward
        ``--max-total-trials``.
        """
        heartbeats = isinstance(storage, str) and not storage.endswith(".log")
        if heartbeats:
            storage = self._settings.storage(storage)
        study = self._optuna.create_study(*args, storage=storage, **kwargs)
        if heartbeats:
            fail_stale_trials(study)
        return study

    def __getattr__(self, name: str) -> Any:
        if name == "_optuna":  # not set yet (copy, pickle): do not recurse
            raise AttributeError(name)
        return getattr(self._optuna, name)


def retries_of(trials: "Sequence[optuna.trial.FrozenTrial]", number: int) -> "list[optuna.trial.FrozenTrial]":
    """
    :param trials: a study's trials
    :param number: a trial's number
    :return: the trials that retried that trial (after its worker was lost), or retried one of its retries, in order
    """
    retry = _retry_callback_class()
    with _quietly():
        return [trial for trial in trials if number in retry.retry_history(trial)]


def check_complete(trials: "Sequence[optuna.trial.FrozenTrial]", trial_id: int, study_name: str) -> None:
    """
    :param trials: a study's trials
    :param trial_id: ``--trial-id``, an index into them as rl-zoo3 takes it
    :param study_name: the study's name, for the message
    :raises ValueError: if there is no such trial, or if it is not ``COMPLETE`` (its parameters have no result: a
        failed, pruned or running trial, or a queued retry), naming its state and any retry of it
    """
    from optuna.trial import TrialState

    try:
        trial = trials[trial_id]
    except IndexError:
        raise ValueError(f"--trial-id {trial_id}: study {study_name!r} has {len(trials)} trials") from None
    if trial.state == TrialState.COMPLETE:
        return
    message = f"--trial-id {trial_id}: trial {trial.number} of study {study_name!r} is {trial.state.name}, not COMPLETE"
    retries = retries_of(trials, trial.number)
    if retries:
        message += "; it was retried as " + ", ".join(f"trial {retry.number} ({retry.state.name})" for retry in retries)
        complete = [retry.number for retry in retries if retry.state == TrialState.COMPLETE]
        if complete:
            message += f": load that one with --trial-id {complete[-1]}"
    elif trial.state == TrialState.RUNNING:
        message += " (its worker is still running it, or was lost: see sb3_jepa.zoo.retry_lost_trials)"
    raise ValueError(message)
