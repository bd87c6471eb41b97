"""Throughput and memory of the offline evaluator on events from the real data.

    .venv/bin/python bench/bench_evaluate.py [--min-events 500000] [--seed 0]
        [--profile-events 150000] [--no-cli] [--no-profile]

Steps:

1. Build the input: the UCI Online Retail conversion (`monitor.datasets.online_retail`,
   about 125,000 events) replayed in K interleaved copies with shifted customer ids
   (`replicate_customers`: customer 12346 of copy k is 12346 + k * 1,000,000, and its
   documents get the prefix `rk-`), K the smallest count that reaches `--min-events`.
   Clock ticks are shared, so the copies stay one time-sorted stream of K times as
   many accounts. Written to `bench/out/evaluate-input.jsonl`.
2. In-process run: a fresh interpreter imports the evaluator, feeds the file to
   `evaluate_lines` with the default policy, serialises every output with
   `monitor.evaluate.dumps` (as the CLI does) into /dev/null, and reports events/s and
   its peak RSS (`ru_maxrss`; tracemalloc stays off). A fresh process, so that the
   memory of step 1 is not counted.
3. The CLI, `credit-monitor evaluate FILE > /dev/null`, as a subprocess, for comparison.
4. Profile: cProfile over the first `--profile-events` events (self and cumulative
   time per function), and pyinstrument's sampling profile of the same slice when
   pyinstrument is installed (much lower overhead, so its shares are the truer ones).
5. Print a table and write `bench/RESULTS-evaluate.md`, keeping its hand-written
   `## Notes` section (the reading of the figures) from the previous version.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import math
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS-evaluate.md"
TARGET_EVENTS_PER_S = 30_000


# ---- step 1: the input ---------------------------------------------------------------


def build_input(min_events: int, seed: int) -> dict[str, Any]:
    from monitor.datasets import online_retail
    from monitor.datasets.common import replicate_customers, write_jsonl

    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base = OUT / "online-retail.jsonl"
    with open(base, "wb") as out:
        counts = write_jsonl(online_retail.events(seed=seed), out)
    base_events = sum(counts.values())
    ticks = counts.get("clock.tick", 0)
    copies = max(1, math.ceil((min_events - ticks) / (base_events - ticks)))

    path = OUT / "evaluate-input.jsonl"
    with open(base, "rb") as src, open(path, "wb") as out:
        stream = replicate_customers((orjson.loads(line) for line in src), copies)
        total = sum(write_jsonl(stream, out).values())
    return {
        "path": str(path),
        "base_events": base_events,
        "base_counts": counts,
        "copies": copies,
        "events": total,
        "build_seconds": time.perf_counter() - started,
    }


# ---- step 2: in-process run (in a child interpreter) -----------------------------------


def measure(path: str) -> dict[str, Any]:
    """Run in the child: evaluate the whole file, serialise every output, time it."""
    from monitor.domain.policy import Policy
    from monitor.evaluate import dumps, evaluate_lines

    policy = Policy.default_policy()
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outputs = out_bytes = 0
    with open(path, "rb") as src, open(os.devnull, "wb") as sink:
        started = time.perf_counter()
        for event in evaluate_lines(src, policy, name=path):
            line = dumps(event)
            sink.write(line)
            outputs += 1
            out_bytes += len(line)
        seconds = time.perf_counter() - started
    events = _count_lines(path)
    return {
        "events": events,
        "outputs": outputs,
        "output_bytes": out_bytes,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "rss_before_kb": rss_before_kb,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def run_child(args: list[str]) -> tuple[float, int, str]:
    """Run a command to completion; its wall seconds, peak RSS (KiB) and stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss, stdout


# ---- step 3: the CLI ------------------------------------------------------------------


def run_cli(path: str) -> dict[str, Any]:
    cli = shutil.which("credit-monitor", path=str(Path(sys.executable).parent))
    command = [cli or "credit-monitor", "evaluate", path]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {proc.returncode}")
    events = _count_lines(path)
    return {
        "command": f"{Path(command[0]).name} evaluate {_relative(path)}",
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "peak_rss_kb": usage.ru_maxrss,
    }


# ---- step 4: profile (in a child interpreter) -----------------------------------------


def profile(path: str, events: int, top: int) -> dict[str, Any]:
    """Run in the child: cProfile, then pyinstrument if present, over `events` events."""
    from monitor.domain.policy import Policy
    from monitor.evaluate import dumps, evaluate_lines

    with open(path, "rb") as f:
        lines = list(islice(f, events))

    def work() -> None:
        for event in evaluate_lines(lines, Policy.default_policy()):
            dumps(event)

    started = time.perf_counter()
    work()
    plain_seconds = time.perf_counter() - started

    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    prof_path = OUT / "evaluate.prof"
    profiler.dump_stats(prof_path)
    result: dict[str, Any] = {
        "events": len(lines),
        "plain_seconds": plain_seconds,
        "cprofile": _cprofile_table(pstats.Stats(str(prof_path)), top),
        "cprofile_file": str(prof_path.relative_to(ROOT)),
    }

    try:
        from pyinstrument import Profiler
    except ImportError:
        result["pyinstrument"] = None
        return result
    sampler = Profiler(interval=0.0005)
    sampler.start()
    work()
    session = sampler.stop()
    text_path = OUT / "evaluate-pyinstrument.txt"
    text_path.write_text(sampler.output_text(unicode=False, color=False))
    result["pyinstrument"] = _pyinstrument_table(session.root_frame(), top)
    result["pyinstrument_file"] = str(text_path.relative_to(ROOT))
    return result


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def _where(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a built-in
    path = Path(filename)
    try:
        short = str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        short = (
            "/".join(parts[parts.index("site-packages") + 1 :])
            if ("site-packages" in parts)
            else path.name
        )
    return f"{short}:{line}({name})"


def _cprofile_table(stats: pstats.Stats, top: int) -> dict[str, Any]:
    entries = stats.stats  # type: ignore[attr-defined]
    # The whole run is the `work` loop; total_tt leaves out the profiler's own calls.
    total = max(
        (v[3] for (_, _, name), v in entries.items() if name == "work"),
        default=stats.total_tt,  # type: ignore[attr-defined]
    )
    rows = []
    for (filename, line, name), (_, calls, self_s, cum_s, _) in entries.items():
        rows.append(
            {
                "function": _where(filename, line, name),
                "calls": calls,
                "self_s": self_s,
                "cum_s": cum_s,
            }
        )
    return _ranked(rows, total, top)


def _ranked(rows: list[dict[str, Any]], total: float, top: int) -> dict[str, Any]:
    """The top functions by self and by cumulative time, shares of `total`.

    The benchmark's own frames (the `work` loop and what calls it) are left out.
    """
    rows = [r for r in rows if not r["function"].startswith("bench/")]
    for r in rows:
        r["self_share"] = r["self_s"] / total
        r["cum_share"] = r["cum_s"] / total
    by_self = sorted(rows, key=lambda r: r["self_s"], reverse=True)[:top]
    by_cum = sorted(rows, key=lambda r: r["cum_s"], reverse=True)[:top]
    return {"total_s": total, "by_self": by_self, "by_cum": by_cum}


def _pyinstrument_table(root: Any, top: int) -> dict[str, Any]:
    """Self and cumulative time per function from pyinstrument's call tree."""
    self_s: dict[str, float] = {}
    cum_s: dict[str, float] = {}

    def walk(frame: Any, ancestors: frozenset[str]) -> None:
        if frame.is_synthetic:  # "[self]", "[await]": already in the parent's figures
            return
        key = _where(frame.file_path or "~", frame.line_no or 0, frame.function or "?")
        self_s[key] = self_s.get(key, 0.0) + frame.total_self_time
        if key not in ancestors:  # recursion: count a function's time once
            cum_s[key] = cum_s.get(key, 0.0) + frame.time
        for child in frame.children:
            walk(child, ancestors | {key})

    if root is None:
        return {"total_s": 0.0, "by_self": [], "by_cum": []}
    walk(root, frozenset())
    total = max(
        (t for k, t in cum_s.items() if k.endswith("(work)")), default=root.time
    )
    rows = [
        {"function": k, "self_s": self_s[k], "cum_s": cum_s.get(k, 0.0)} for k in self_s
    ]
    return _ranked(rows, total, top)


# ---- step 5: report --------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    revision = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "revision": revision or "?",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def render_results(
    info: dict[str, str],
    built: dict[str, Any],
    inproc: dict[str, Any],
    cli: dict[str, Any] | None,
    prof: dict[str, Any] | None,
    argv: list[str],
) -> str:
    rows = [
        ("in-process `evaluate_lines` + `dumps`", inproc),
        *([(f"CLI `{cli['command']}`", cli)] if cli else []),
    ]
    out = [
        "# Offline evaluator benchmark",
        "",
        "Written by `bench/bench_evaluate.py`; rerun it to refresh this file.",
        "",
        f"- machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}; {info['os']}",
        f"- Python {info['python']}; default policy; tracemalloc off",
        (
            f"- date: {info['date']}; load average at the end {info['load']} (a "
            "shared machine: other work on it slows every figure here)"
        ),
        f"- code: `git describe --dirty` = `{info['revision']}`",
        f"- command: `.venv/bin/python {' '.join(argv)}`",
        "",
        "## Input",
        "",
        (
            f"UCI Online Retail converted by `monitor.datasets.online_retail` (seed "
            f"{built.get('seed', 0)}): {built['base_events']:,} events, replayed in "
            f"{built['copies']} interleaved copies with customer ids shifted by "
            f"k × 1,000,000 (clock ticks shared): **{built['events']:,} events** in "
            "`bench/out/evaluate-input.jsonl`."
        ),
        "",
        "| event type | one copy |",
        "| --- | ---: |",
        *[f"| `{k}` | {v:,} |" for k, v in sorted(built["base_counts"].items())],
        "",
        "## Throughput and memory",
        "",
        f"Target: {TARGET_EVENTS_PER_S:,} events/s in one process.",
        "",
        "| run | events | seconds | events/s | peak RSS |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        out.append(
            f"| {name} | {r['events']:,} | {r['seconds']:,.1f} | "
            f"{r['events_per_s']:,.0f} | {_mib(r['peak_rss_kb'])} |"
        )
    out += [
        "",
        (
            f"The in-process run produced {inproc['outputs']:,} output events "
            f"({inproc['output_bytes'] / 2**20:,.0f} MiB of JSON); its interpreter "
            f"held {_mib(inproc['rss_before_kb'])} after imports, before the first "
            "event."
        ),
    ]
    if prof:
        out += _profile_section(prof)
    return "\n".join(out) + "\n"


def _profile_section(prof: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Profile",
        "",
        (
            f"The first {prof['events']:,} events of the same input; without a "
            f"profiler they take {prof['plain_seconds']:.1f} s "
            f"({prof['events'] / prof['plain_seconds']:,.0f} events/s)."
        ),
    ]
    if prof.get("pyinstrument"):
        out += _table(
            "pyinstrument (sampling, 0.5 ms)",
            prof["pyinstrument"],
            f"Full call tree: `{prof['pyinstrument_file']}`.",
        )
    out += _table(
        "cProfile (deterministic; its per-call overhead inflates small functions)",
        prof["cprofile"],
        f"Raw stats: `{prof['cprofile_file']}` (`python -m pstats` to browse).",
        calls=True,
    )
    return out


def _table(title: str, t: dict[str, Any], note: str, calls: bool = False) -> list[str]:
    head = (
        "| function | "
        + ("calls | " if calls else "")
        + "self s | self % | cum s | cum % |"
    )
    rule = "| --- | " + ("---: | " if calls else "") + "---: | ---: | ---: | ---: |"

    def row(r: dict[str, Any]) -> str:
        n = f"{r['calls']:,} | " if calls else ""
        return (
            f"| `{r['function']}` | {n}{r['self_s']:.2f} | {100 * r['self_share']:.1f} | "
            f"{r['cum_s']:.2f} | {100 * r['cum_share']:.1f} |"
        )

    return [
        "",
        f"### {title}",
        "",
        f"Total {t['total_s']:.1f} s. {note}",
        "",
        "By self time:",
        "",
        head,
        rule,
        *[row(r) for r in t["by_self"]],
        "",
        "By cumulative time:",
        "",
        head,
        rule,
        *[row(r) for r in t["by_cum"]],
    ]


NOTES_HEADING = "## Notes"


def _kept_notes(path: Path) -> str:
    """The hand-written `## Notes` section of the previous results, kept on rerun."""
    try:
        previous = path.read_text()
    except OSError:
        return ""
    at = previous.find(f"\n{NOTES_HEADING}\n")
    return previous[at:] if at >= 0 else ""


def print_table(
    built: dict[str, Any], inproc: dict[str, Any], cli: dict[str, Any] | None
) -> None:
    print(
        f"\ninput: {built['events']:,} events ({built['copies']} copies of "
        f"{built['base_events']:,})"
    )
    print(f"{'run':<14}{'events':>10}{'seconds':>10}{'events/s':>11}{'peak RSS':>12}")
    for name, r in (("in-process", inproc), ("cli", cli)):
        if r:
            print(
                f"{name:<14}{r['events']:>10,}{r['seconds']:>10.1f}"
                f"{r['events_per_s']:>11,.0f}{_mib(r['peak_rss_kb']):>12}"
            )
    print(f"target: {TARGET_EVENTS_PER_S:,} events/s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-events", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile-events", type=int, default=150_000)
    parser.add_argument(
        "--top", type=int, default=15, help="functions per profile table"
    )
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--results", default=str(RESULTS))
    # internal: the child-process roles
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    if args.profile:
        print(json.dumps(profile(args.profile, args.profile_events, args.top)))
        return 0

    print("building the input ...", file=sys.stderr)
    built = build_input(args.min_events, args.seed)
    built["seed"] = args.seed
    print(
        f"  {built['events']:,} events in {built['build_seconds']:.0f} s",
        file=sys.stderr,
    )
    me = [sys.executable, str(Path(__file__).resolve())]

    print("in-process run ...", file=sys.stderr)
    _, _, stdout = run_child([*me, "--measure", built["path"]])
    inproc = json.loads(stdout)
    cli = None
    if not args.no_cli:
        print("CLI run ...", file=sys.stderr)
        cli = run_cli(built["path"])
    prof = None
    if not args.no_profile:
        print("profiling ...", file=sys.stderr)
        _, _, stdout = run_child(
            [
                *me,
                "--profile",
                built["path"],
                "--profile-events",
                str(args.profile_events),
                "--top",
                str(args.top),
            ]
        )
        prof = json.loads(stdout)

    print_table(built, inproc, cli)
    text = render_results(
        machine(),
        built,
        inproc,
        cli,
        prof,
        [str(Path(__file__).resolve().relative_to(ROOT)), *argv],
    )
    Path(args.results).write_text(text + _kept_notes(Path(args.results)))
    print(f"\nwrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
