"""
What the rl-zoo3 registration hook costs at interpreter start: ``python -c ...`` with the hook installed (the
normal state after ``pip install``) against the same interpreter with ``SB3_JEPA_NO_ZOO_HOOK=1`` (the hook module
is still imported by its .pth line, but installs nothing), interleaved, medians over many starts. Also reported:
the import time of ``sb3_jepa_zoo_hook`` itself (``-X importtime``), and a start that imports many stdlib modules
(each import passes through the hook's ``find_spec``).

    python -m benchmarks.startup --repeats 40
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

PROGRAMS = {
    "empty": "pass",
    "many imports": "import json, csv, email.message, http.client, xml.dom.minidom, sqlite3, decimal, argparse, logging",
}


def start_time(program: str, opt_out: bool) -> float:
    env = dict(os.environ)
    env.pop("SB3_JEPA_NO_ZOO_HOOK", None)
    if opt_out:
        env["SB3_JEPA_NO_ZOO_HOOK"] = "1"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", program], env=env, check=True)
    return time.perf_counter() - start


def hook_import_us() -> int:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True)
    for line in result.stderr.splitlines():
        if line.rstrip().endswith("sb3_jepa_zoo_hook"):
            return int(line.split("|")[1])  # cumulative microseconds
    raise RuntimeError("sb3_jepa_zoo_hook was not imported at start: is the package installed?")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)
    if args.repeats <= 0:
        parser.error("--repeats must be positive")
    imports = [hook_import_us() for _ in range(args.repeats)]
    print(f"import of sb3_jepa_zoo_hook at start: median {statistics.median(imports)} us over {args.repeats} starts")
    for name, program in PROGRAMS.items():
        times: dict[bool, list[float]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for opt_out in (False, True) if repeat % 2 == 0 else (True, False):
                times[opt_out].append(start_time(program, opt_out))
        with_hook, without = statistics.median(times[False]), statistics.median(times[True])
        print(
            f"{name:>13}: with hook {1000 * with_hook:.1f} ms, opted out {1000 * without:.1f} ms "
            f"(medians of {args.repeats}), difference {1000 * (with_hook - without):+.2f} ms ({with_hook / without:.3f}x)"
        )


if __name__ == "__main__":
    main()
