"""
The study on Ray: each run a Ray task (``num_cpus`` = the run's torch threads, ``num_gpus`` where asked), so that the
same command runs on a laptop, a workstation or a Ray cluster (``--backend ray --address auto|ray://host:port``).

Where the run folders go: when a task sees the driver's output folder (a shared filesystem: a marker file the driver
writes there is visible to it), it writes its run folder there, as the process pool's workers do; otherwise it
writes into a temporary folder of its node and sends the folder's files back, and the driver writes them, the
summary last (so that resume semantics stay: a run without its summary is unfinished and runs again).

A task whose worker process dies (killed, out of memory, its node lost) is retried by Ray itself (``max_retries``, the
study's ``--retries``); an exception raised by the run is not (``retry_exceptions=False``: it would raise again).
Once Ray gives up, the run fails with a :class:`~sb3_jepa.study.workers.WorkerLost` naming Ray's reason. Each
summary records the node that ran it (``worker.node_id``).

Needs the ``ray`` extra.
"""

import functools
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sb3_jepa.common.utils import write_atomically
from sb3_jepa.study.runner import RunSpec, execute
from sb3_jepa.study.workers import DEFAULT_RETRIES, WorkerLost

#: Name of the marker a driver writes into its output folder; its content says which driver wrote it
MARKER = ".sb3_jepa_study_driver"


def run_task(
    spec: RunSpec, out: str, marker: str | None, token: str, progress: Any, require_shared: bool = False
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """
    One run, in a Ray task.

    :param spec: the run
    :param out: the driver's output folder
    :param marker: the marker file's path under ``out`` (None: never write into ``out``, send the files back)
    :param token: what the driver wrote into the marker
    :param progress: a ``ray.util.queue.Queue`` for progress messages, or None
    :param require_shared: fail where the task does not see the marker, instead of sending the files back
    :return: the summary, and the run folder's files (relative path -> bytes) when the folder is not shared (else
        nothing: the files are already in place)
    """
    import ray

    where = {"backend": "ray", "node_id": ray.get_runtime_context().get_node_id()}
    shared = marker is not None and Path(marker).is_file() and Path(marker).read_text() == token
    if shared:
        return execute(spec, Path(out), progress, where), {}
    if require_shared:
        raise FileNotFoundError(
            f"shared filesystem asked for, but the task on node {where['node_id']} does not see the driver's "
            f"marker {marker} (is {out} on a filesystem every node mounts at that path?)"
        )
    local = Path(tempfile.mkdtemp(prefix="sb3_jepa_study_"))
    try:
        summary = execute(spec, local, progress, where)
        run_dir = spec.directory(local)
        files = {str(path.relative_to(run_dir)): path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
        return summary, files
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _write_to(data: bytes, file: Any) -> None:
    file.write(data)


def write_run_files(spec: RunSpec, out: Path, files: dict[str, bytes]) -> None:
    """
    Write a run's files sent back by a task, ``summary.json`` last and atomically (it marks the run finished).

    :param spec: the run
    :param out: the study's output folder
    :param files: relative path -> bytes
    """
    run_dir = spec.directory(out)
    for name in sorted(files, key=lambda name: name == "summary.json"):
        target = run_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, functools.partial(_write_to, files[name]), binary=True)


def run_on_ray(
    todo: list[RunSpec],
    out: Path,
    address: str | None,
    gpus_per_run: float,
    on_progress: Callable[[int], None],
    on_result: Callable[[RunSpec, dict[str, Any] | None, BaseException | None], None],
    shared_filesystem: bool | None = None,
    retries: int = DEFAULT_RETRIES,
) -> None:
    """
    Run the specs as Ray tasks; report progress and each result as it comes.

    :param todo: the unfinished runs
    :param out: the study's output folder
    :param address: the Ray cluster (``ray.init``'s: None starts a local one, ``auto`` joins the running one,
        ``ray://host:port`` connects a client)
    :param gpus_per_run: the GPU fraction each task asks for (0: none)
    :param on_progress: called with the timesteps done since the last message
    :param on_result: called with each run's summary, or its error
    :param shared_filesystem: whether the tasks write into ``out`` themselves; None: where they see the driver's
        marker; False: always send the files back; True: always write into ``out`` (an error where a task cannot see
        it)
    :param retries: how many times Ray starts a task again whose worker died
    """
    import ray
    from ray.util.queue import Empty, Queue

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    out.mkdir(parents=True, exist_ok=True)
    marker, token = out / MARKER, uuid.uuid4().hex
    marker.write_text(token)
    # No CPU for the queue actor: with every CPU taken by runs it could not be placed, and the runs would wait on it
    progress = Queue(actor_options={"num_cpus": 0})
    remote = ray.remote(run_task)
    # A dead worker (SIGKILL, Ray's memory monitor, a lost node) is retried by Ray; the run's own errors are not
    options = {"num_gpus": gpus_per_run, "max_retries": retries, "retry_exceptions": False}
    marker_path = None if shared_filesystem is False else str(marker.resolve())
    lost_worker_errors = (
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.OutOfMemoryError,
        ray.exceptions.NodeDiedError,
    )
    refs = {
        remote.options(num_cpus=spec.threads, **options).remote(
            spec, str(out.resolve()), marker_path, token, progress, shared_filesystem is True
        ): spec
        for spec in todo
    }
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            while True:
                try:
                    _, steps = progress.get_nowait()
                except Empty:
                    break
                on_progress(steps)
            for ref in done:
                spec = refs[ref]
                try:
                    summary, files = ray.get(ref)
                except ray.exceptions.RayTaskError as failure:
                    # The run's own exception, as raised in the task
                    on_result(spec, None, failure.cause if isinstance(failure.cause, BaseException) else failure)
                    continue
                except lost_worker_errors as lost:
                    # Ray retried it `retries` times already: the cause in words, as the process pool says it
                    on_result(spec, None, WorkerLost(f"{type(lost).__name__}: {lost}", retries + 1))
                    continue
                except ray.exceptions.RayError as failure:
                    on_result(spec, None, failure)
                    continue
                if files:
                    write_run_files(spec, out, files)
                on_result(spec, summary, None)
    except KeyboardInterrupt:
        # Ctrl-C: cancel what is still running or queued; unfinished runs have no summary and run again next time
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        marker.unlink(missing_ok=True)
        if started_here:
            ray.shutdown()
