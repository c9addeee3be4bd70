"""
The local process pool of the study and the planning evaluation: every task in a fresh worker process (spawned, at
most ``workers`` at once) with its own result pipe, so that a worker that dies (any signal, the out-of-memory
killer, a stray ``kill``) fails only the task it was running. That task is retried up to ``retries`` times, then
reported as a :class:`WorkerLost` whose message says the cause in words; the other tasks go on.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, the whole executor is broken:
every pending future fails with ``BrokenProcessPool`` and it terminates the other workers too (CPython 3.11,
``concurrent/futures/process.py``, ``_ExecutorManagerThread.terminate_broken``), so a healthy run's progress was
lost with the dead one's. A process per task costs one interpreter start (a few seconds of imports) per task, which
is nothing next to a training run.
"""

import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from queue import Empty
from typing import Any

#: How many times a task whose worker died is started again (0: never): one retry outlives a transient kill (a
#: preempted job, a stray signal); a second death of the same task is more likely its own doing (out of memory)
DEFAULT_RETRIES = 1
#: Seconds to wait for a worker that has sent its result to exit before it is terminated
EXIT_GRACE_S = 60.0


class WorkerLost(RuntimeError):
    """
    A task's worker died before it returned, on every attempt.

    :param cause: what happened, in words (:func:`death_cause`)
    :param attempts: how many times the task was started
    """

    def __init__(self, cause: str, attempts: int):
        self.cause, self.attempts = cause, attempts
        tries = "once" if attempts == 1 else f"on each of {attempts} attempts"
        super().__init__(f"{cause} ({tries})")


def death_cause(exitcode: int) -> str:
    """
    :param exitcode: ``multiprocessing.Process.exitcode`` of a worker that sent no result (negative: the signal)
    :return: the cause in words, e.g. ``worker killed by signal 9 (SIGKILL): out of memory?``
    """
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        cause = f"worker killed by signal {number} ({name})"
        if number == signal.SIGKILL:
            # What the kernel's out-of-memory killer sends; also `kill -9` and most schedulers' hard preemption
            cause += ": out of memory? (the kernel's OOM killer sends SIGKILL; dmesg says)"
        return cause
    return f"worker exited with code {exitcode} before returning a result"


def _work(function: Callable[[Any, Path, Any], Any], task: Any, out: Path, progress: Any, result: Connection) -> None:
    """A worker's whole life: one call, whose result or exception goes back through the pipe."""
    try:
        message: tuple[Any, BaseException | None] = (function(task, out, progress), None)
    except BaseException as raised:  # KeyboardInterrupt too: the parent reports it with the task
        message = (None, raised)
    try:
        result.send(message)
    except Exception as unpicklable:  # an exception that does not pickle still reaches the parent, in words
        error = message[1]
        text = f"{type(error).__name__}: {error}" if error is not None else "the result"
        result.send((None, RuntimeError(f"{text} (could not be sent back: {unpicklable})")))
    finally:
        result.close()


@dataclass
class _Running:
    task: Any
    attempt: int
    process: Any
    result: Connection


def run_on_process_pool(
    function: Callable[[Any, Path, Any], Any],
    todo: list[Any],
    out: Path,
    workers: int,
    on_progress: Callable[[int], None],
    on_result: Callable[[Any, Any, BaseException | None], None],
    retries: int = DEFAULT_RETRIES,
    on_retry: Callable[[Any, str, int], None] | None = None,
) -> None:
    """
    Call ``function(task, out, progress_queue)`` for every task, each in its own worker process, at most ``workers``
    at once, passing on progress messages and results as they come. An exception raised by ``function`` is that
    task's result (not retried: it would raise again); a worker that dies is started again up to ``retries`` times,
    and then the task's result is a :class:`WorkerLost`.

    :param function: a picklable module-level function; its progress queue receives ``(key, count)`` pairs
    :param todo: the tasks
    :param out: the output folder
    :param workers: worker processes at once
    :param on_progress: called with the count of each progress message (timesteps, episodes)
    :param on_result: called with each task, and its result or its error
    :param retries: how many times a task whose worker died is started again
    :param on_retry: called with the task, the cause in words and the next attempt's number, before each retry
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    context = get_context("spawn")  # no fork after torch has started threads
    # A manager's queue: a worker killed while putting into a multiprocessing.Queue can leave its lock held forever;
    # a manager's proxy only loses that worker's connection
    manager = context.Manager()
    progress = manager.Queue()
    waiting = deque((task, 1) for task in todo)
    running: dict[Connection, _Running] = {}

    def start(task: Any, attempt: int) -> None:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_work, args=(function, task, out, progress, send), name=f"worker-{attempt}")
        process.start()
        send.close()  # the worker holds the only sending end: its death reads as EOF here
        running[receive] = _Running(task, attempt, process, receive)

    def drain_progress() -> None:
        while True:
            try:
                _, count = progress.get_nowait()
            except Empty:
                return
            on_progress(count)

    try:
        while waiting or running:
            while waiting and len(running) < workers:
                start(*waiting.popleft())
            drain_progress()
            for connection in wait(list(running), timeout=0.5):
                assert isinstance(connection, Connection)
                worker = running.pop(connection)
                try:
                    value, error = connection.recv()
                except EOFError:  # no result: the worker died
                    worker.process.join()
                    cause = death_cause(worker.process.exitcode)
                    if worker.attempt <= retries:
                        if on_retry is not None:
                            on_retry(worker.task, cause, worker.attempt + 1)
                        waiting.appendleft((worker.task, worker.attempt + 1))
                        continue
                    value, error = None, WorkerLost(cause, worker.attempt)
                finally:
                    connection.close()
                worker.process.join(EXIT_GRACE_S)
                if worker.process.is_alive():
                    worker.process.terminate()
                drain_progress()  # the task's last progress messages before its result
                on_result(worker.task, value, error)
    finally:
        for worker in running.values():  # Ctrl-C or an error here: no worker outlives its driver
            worker.process.terminate()
        for worker in running.values():
            worker.process.join()
        manager.shutdown()


def report_retry(describe: Callable[[Any], str]) -> Callable[[Any, str, int], None]:
    """
    :param describe: a task -> its name in messages
    :return: an ``on_retry`` callback printing ``<task>: <cause>; starting it again (attempt N)`` to stderr
    """

    def on_retry(task: Any, cause: str, attempt: int) -> None:
        print(f"{describe(task)}: {cause}; starting it again (attempt {attempt})", file=sys.stderr, flush=True)

    return on_retry
