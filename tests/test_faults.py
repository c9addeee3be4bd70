"""
Faults, injected for real: a study's worker killed with SIGKILL (process pool, Ray, a two-node Ray cluster), bad
arguments, an unwritable or full disk, corrupt run files. Nothing finished may be lost or redone; the killed run is
retried or reported with its cause; the other runs complete; no report is built from half a file.
"""

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_study import TINY, run_files, study, tiny_specs

#: CartPole runs long enough to be caught mid-run (a few seconds of training after the worker's imports)
LONGER = [*TINY, "--timesteps", "1024", "--configs", "jepa_rl"]


def holder_of(path: Path) -> int | None:
    """:return: the pid of a process holding ``path`` open (read from ``/proc/<pid>/fd``, as ``lsof`` does)"""
    target = str(path.resolve())
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == target for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:  # a process that exited meanwhile, or one we may not read
            continue
    return None


class Killer(threading.Thread):
    """
    SIGKILL the process that has a run's ``stdout.log`` open: the run's worker, mid-run (a run closes its log
    before it writes its tables and its summary, so a holder has not finished).

    :param run_dir: the run's folder
    :param timeout: seconds to wait for a holder
    """

    def __init__(self, run_dir: Path, timeout: float = 240.0):
        super().__init__(daemon=True)
        self.log, self.timeout = run_dir / "stdout.log", timeout
        self.killed: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            pid = holder_of(self.log) if self.log.exists() else None
            if pid is not None and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                self.killed = pid
                return
            time.sleep(0.05)


def study_killing(run_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``python -m sb3_jepa.study`` while its worker of ``run_dir`` is killed: the result and the killed pid."""
    killer = Killer(run_dir)
    killer.start()
    result = study(*args, check=False)
    killer.join()
    assert killer.killed is not None, f"no worker held {run_dir}/stdout.log:\n{result.stderr[-3000:]}"
    return result, killer.killed


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_a_killed_worker_loses_one_run_not_the_study(tmp_path):
    out = tmp_path / "study"
    seed = {n: out / "CartPole-v1" / "jepa_rl" / f"seed{n}" for n in range(3)}
    # No retries: the killed run is reported with its cause, the healthy one finishes, the report covers it
    result, _ = study_killing(seed[0], "run", *LONGER, "--seeds", "0", "1", "--retries", "0", "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"FAILED {seed[0]}: WorkerLost: worker killed by signal 9 (SIGKILL): out of memory?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (seed[0] / "summary.json").exists() and (seed[1] / "summary.json").exists()
    assert "| jepa_rl | 1 |" in (out / "report.md").read_text()
    healthy = (seed[1] / "summary.json").stat().st_mtime_ns
    # Its folder is resumable: the same command does that run, and only that one
    study("run", *LONGER, "--seeds", "0", "1", "--out", str(out))
    assert (seed[1] / "summary.json").stat().st_mtime_ns == healthy
    undisturbed = run_files(out)

    # With the default retry: started again, and the study ends as if nothing had happened
    again = tmp_path / "retried"
    result, killed = study_killing(
        again / "CartPole-v1" / "jepa_rl" / "seed0", "run", *LONGER, "--seeds", "0", "1", "2", "--out", str(again)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    retry = f"{again}/CartPole-v1/jepa_rl/seed0: worker killed by signal 9 (SIGKILL)"
    assert retry in result.stderr and result.stderr.count("starting it again (attempt 2)") == 1
    assert summary(again / "CartPole-v1" / "jepa_rl" / "seed0")["worker"]["pid"] != killed
    files = run_files(again)
    assert len(files) == 9 and {key: files[key] for key in undisturbed} == undisturbed  # seeds 0 and 1, bit for bit
    pids = {summary(run_dir)["worker"]["pid"] for run_dir in (again / "CartPole-v1" / "jepa_rl").iterdir()}
    assert len(pids) == 3 and killed not in pids


@pytest.mark.slow
def test_a_study_in_which_nothing_finished_says_so_in_one_line(tmp_path):
    # Passes the checks (jepa_coef is only validated by the algorithm), fails in every worker
    result = study("run", *TINY, "--configs", "jepa_rl", "--seeds", "0", "--hyperparams", "jepa_coef:-1",
                   "--out", str(tmp_path), check=False)  # fmt: skip
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "jepa_coef must be a finite number >= 0" in result.stderr
    assert f"No finished run under {tmp_path}" in result.stderr and "1 failed, see above" in result.stderr
    result = study("report", "--out", str(tmp_path), check=False)
    assert result.returncode == 3 and result.stderr.count("\n") == 1 and "No finished run" in result.stderr


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` on ``folder`` (skip where this process may not mount)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_bad_arguments_are_refused_before_any_worker_starts(tmp_path):
    started = time.perf_counter()
    result = study("run", *TINY, "--env", "CartPol-v1", "--out", str(tmp_path / "a"), check=False)
    assert result.returncode == 2 and "--env CartPol-v1: Environment `CartPol` doesn't exist" in result.stderr
    assert "Did you mean: `CartPole`?" in result.stderr
    result = study("run", *TINY, "--env", "CartPole-v1", "NoSuchEnv-v0", "--out", str(tmp_path / "a"), check=False)
    assert result.returncode == 2 and "--env NoSuchEnv-v0: Environment `NoSuchEnv` doesn't exist." in result.stderr
    assert not (tmp_path / "a").exists()
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    result = study("run", *TINY, "--out", str(a_file), check=False)
    assert result.returncode == 2 and f"output folder {a_file} is a file, not a folder" in result.stderr
    result = study("run", *TINY, "--out", str(a_file / "study"), check=False)
    assert result.returncode == 2 and f"output folder {a_file}/study cannot be made: {a_file} is a file" in result.stderr
    assert "Traceback" not in result.stderr
    # All refused in the parser's time, not a worker's: no run folder anywhere
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]
    assert time.perf_counter() - started < 120
    with tmpfs(tmp_path / "ro", "ro,size=1m") as read_only:
        result = study("run", *TINY, "--out", str(read_only / "study"), check=False)
        assert result.returncode == 2 and "cannot be written: Read-only file system" in result.stderr


@pytest.mark.slow
def test_the_planning_evaluation_refuses_bad_arguments_before_loading_a_model(tmp_path):
    def evaluate(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sb3_jepa.planning", "evaluate", "--study", str(tmp_path), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    result = evaluate("--env", "TwoRoomsDiscrete-v9", "--out", str(tmp_path / "planning"))
    assert result.returncode == 2 and "--env TwoRoomsDiscrete-v9: Environment version `v9`" in result.stderr
    result = evaluate("--out", str(a_file))
    assert result.returncode == 2 and f"output folder {a_file} is a file, not a folder" in result.stderr
    assert "Traceback" not in result.stderr and sorted(path.name for path in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
def test_a_full_disk_fails_the_run_and_leaves_no_half_file(tmp_path):
    # 256 KiB: room for the probe and the run's logs, not for its model and tables
    with tmpfs(tmp_path / "small", "size=256k") as small:
        out = small / "study"
        result = study("run", *TINY, "--configs", "jepa_rl", "--seeds", "0", "--out", str(out), check=False)
        assert result.returncode == 3, result.stderr[-3000:]
        assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
        run_dir = out / "CartPole-v1" / "jepa_rl" / "seed0"
        assert not (run_dir / "summary.json").exists() and not list(run_dir.rglob("*.partial"))


def write_finished_run(run_dir: Path) -> None:
    """A finished run's files, as :func:`sb3_jepa.study.runner.execute` writes them."""
    run_dir.mkdir(parents=True)
    keys = dict(algo="ppo_jepa", env_id="CartPole-v1", config="jepa_rl", seed=0, timesteps=256)
    (run_dir / "summary.json").write_text(json.dumps({**keys, "eval_return": 9.0, "train_return": 10.0}))
    (run_dir / "metrics.csv").write_text("timesteps,ep_rew_mean\n128,9.5\n256,10.0\n")
    (run_dir / "episodes.csv").write_text("timesteps,ret,length\n100,9.0,9\n")


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("summary.json", '{"algo": "ppo_jepa", "env_id": "CartPo', "not valid JSON"),
        ("summary.json", '{"eval_return": 9.0}', "not a run summary (missing ['algo'"),
        ("metrics.csv", "timesteps,ep_rew_mean\n128,9.5\n256", "line 3 has 1 fields, the header 2"),
        ("episodes.csv", "timesteps,ret,length\n100,9.0,abc\n", "not a table of numbers"),
    ],
)
def test_a_corrupt_run_file_is_named_and_the_run_done_again(tmp_path, name, content, reason):
    from sb3_jepa.study.report import load_runs
    from sb3_jepa.study.runner import CorruptRunError, RunSpec, is_finished

    spec = RunSpec("ppo_jepa", "CartPole-v1", "jepa_rl", 0, 256)
    run_dir = spec.directory(tmp_path)
    write_finished_run(run_dir)
    assert is_finished(spec, tmp_path) and len(load_runs(tmp_path)) == 1
    (run_dir / name).write_text(content)
    # The report refuses it, naming the file
    with pytest.raises(CorruptRunError, match=re.escape(reason)) as refused:
        load_runs(tmp_path)
    assert refused.value.path == run_dir / name
    # A rerun moves the bad file aside and does the run again
    with pytest.warns(UserWarning, match=re.escape(name) + ".*" + re.escape(f"{reason}") + ".*the run is done again"):
        assert not is_finished(spec, tmp_path)
    assert (run_dir / f"{name}.corrupt").read_text() == content and not (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_report_command_names_a_corrupt_file(tmp_path):
    write_finished_run(tmp_path / "CartPole-v1" / "jepa_rl" / "seed0")
    (tmp_path / "CartPole-v1" / "jepa_rl" / "seed0" / "summary.json").write_text("{")
    result = study("report", "--out", str(tmp_path), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "summary.json: not valid JSON" in result.stderr and "does that run again" in result.stderr


def test_a_write_error_mid_run_leaves_no_half_file(tmp_path, monkeypatch):
    """A full disk while the summary is written (mocked here, in the one place; the tmpfs test fills a real disk)."""
    import sb3_jepa.study.runner as runner

    (spec,) = tiny_specs((0,))
    spec = type(spec)(**{**spec.__dict__, "timesteps": 128, "eval_episodes": 0})
    real_replace = os.replace

    def replace(source: str | Path, target: str | Path) -> None:
        if Path(target).name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(source, target)

    monkeypatch.setattr(runner.os, "replace", replace)
    with warnings.catch_warnings(), pytest.raises(OSError, match="No space left on device"):
        warnings.simplefilter("ignore")
        runner.execute(spec, tmp_path)
    run_dir = spec.directory(tmp_path)
    assert (run_dir / "metrics.csv").exists() and not (run_dir / "summary.json").exists()
    assert not list(run_dir.rglob("*.partial")) and not runner.is_finished(spec, tmp_path)


@pytest.mark.slow
def test_ray_retries_a_killed_task(tmp_path):
    ray = pytest.importorskip("ray")
    from sb3_jepa.study.runner import run_all
    from sb3_jepa.study.workers import WorkerLost

    specs = tiny_specs((0, 1))
    specs = [type(spec)(**{**spec.__dict__, "timesteps": 1024}) for spec in specs]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20)
    try:
        for retries in (1, 0):
            out = tmp_path / f"retries{retries}"
            killer = Killer(specs[0].directory(out))
            killer.start()
            summaries, failures = run_all(specs, out, workers=2, show_progress=False, backend="ray", retries=retries)
            killer.join()
            assert killer.killed is not None
            if retries:
                assert failures == [] and len(summaries) == 2
                assert summary(specs[0].directory(out))["worker"]["pid"] != killer.killed
            else:  # Ray's own reason, as the run's failure; the other run finished all the same
                assert [finished["seed"] for finished in summaries] == [1]
                ((spec, error),) = failures
                assert spec == specs[0] and isinstance(error, WorkerLost) and "WorkerCrashedError" in str(error)
                assert not (spec.directory(out) / "summary.json").exists()
    finally:
        ray.shutdown()


@contextlib.contextmanager
def two_node_cluster() -> Iterator[str]:
    """
    A real Ray cluster of two nodes on this machine (``ray start --head`` and ``ray start --address``: separate
    processes, one CPU each); yields its address. ``--block`` keeps each node under its own process, so stopping the
    cluster stops these two nodes only (``ray stop`` would stop every Ray process on the machine).
    """
    from tests.postgres import free_port

    address = f"127.0.0.1:{free_port()}"
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats"]
    # Ray 2.59+ turns token authentication on by default for a local head (the token in ~/.ray/auth_token) while a
    # node joining an address does not send it: "InvalidAuthToken" (seen with Ray 2.60 once ~/.ray/auth_token
    # existed). One mode for the nodes and the driver; this test cluster listens on 127.0.0.1 only
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head_args = ["--head", "--port", address.split(":")[1], "--include-dashboard=false"]
    nodes = []
    try:
        for args in (head_args, ["--address", address]):
            node = subprocess.Popen(
                ["ray", "start", *args, *common], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True, env=env,
            )  # fmt: skip
            nodes.append(node)
            assert node.stdout is not None
            for line in node.stdout:  # started once it says so (the worker node: once it has joined the head)
                if "Ray runtime started" in line:
                    break
            else:
                pytest.fail(f"ray start {' '.join(args)} exited with {node.wait()}")
        yield address
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
            node.wait(60)
        # `ray start` leaves the address here for ray.init() to join; `ray stop` would remove it, a SIGTERM does not
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(address.split(":")[1]):
                current.unlink()


@pytest.mark.slow
def test_a_two_node_ray_cluster_runs_the_study_on_both_nodes(tmp_path):
    pytest.importorskip("ray")
    with two_node_cluster() as address:
        env = {**os.environ, "RAY_ADDRESS": address, "MPLBACKEND": "Agg", "RAY_AUTH_MODE": "disabled"}
        placements = {}
        for files in ("shared", "sent"):
            out = tmp_path / files
            args = ["run", *TINY, "--configs", "jepa_rl", "--seeds", "0", "1", "--threads", "1", "--backend", "ray",
                    "--address", "auto", "--ray-files", files, "--out", str(out)]  # fmt: skip
            result = subprocess.run([sys.executable, "-m", "sb3_jepa.study", *args], capture_output=True, text=True,
                                    timeout=600, env=env)  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
            workers = [summary(run_dir)["worker"] for run_dir in sorted((out / "CartPole-v1" / "jepa_rl").iterdir())]
            placements[files] = {worker["node_id"] for worker in workers}
            assert all(worker["backend"] == "ray" for worker in workers)
            assert (out / "CartPole-v1" / "jepa_rl" / "seed1" / "zoo" / "model.zip").exists()
        # One CPU per node and one per run: the two runs ran at once, one on each node, in both file modes
        assert len(placements["shared"]) == len(placements["sent"]) == 2
        assert run_files(tmp_path / "shared") == run_files(tmp_path / "sent")
