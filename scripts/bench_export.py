"""Compare the time of `embed_metadata` on a large MP4 with the time of `cp` on the same file.

Usage, from the repository root:

    PYTHONPATH=. .venv/bin/python scripts/bench_export.py [--file BIG.mp4] [--size-mib 1024]

Without --file the script builds a playable MP4 of about --size-mib MiB: a one-second
H.264 video made with ffmpeg, followed by a second `mdat` box of pseudo-random bytes. The
filler is real data, not a hole, so both `cp` and the export must copy every byte. Each
repeat times both operations with the order alternating, and runs `sync` (untimed) before
each one so that writeback of the previous copy does not slow the next. The medians, their
ratio (target at most 1.5) and the machine are printed as a markdown section, and also written
to --report when it is given. Files the script created are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mp4e.vision.mp4box import embed_metadata

TARGET_RATIO = 1.5
_OPERATIONS = ("cp", "embed_metadata", "cp + fsync", "embed_metadata + fsync")
_FILLER_BLOCK_BYTES = 16 * 1024 * 1024


def main() -> int:
    args = _parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mp4e-bench-export-", dir=args.workdir))
    try:
        source = args.file or _build_large_mp4(workdir, args.size_mib)
        timings = _time_repeats(source, workdir, args.repeats)
        _report(args, source, timings)
    finally:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="existing MP4 to export instead of a built one")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the built MP4 in MiB")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each operation")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="folder for the large files (default: /tmp)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="also write the markdown results to this file (they are always printed)",
    )
    return parser.parse_args()


def _build_large_mp4(workdir: Path, size_mib: int) -> Path:
    small = workdir / "small.mp4"
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "1",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(small),
    ]  # fmt: skip
    subprocess.run(command, check=True)

    large = workdir / "large.mp4"
    filler_bytes = max(size_mib * 1024 * 1024 - small.stat().st_size - 16, 0)
    block = os.urandom(_FILLER_BLOCK_BYTES)
    with large.open("wb") as file:
        file.write(small.read_bytes())
        # A second mdat with a 64-bit size: ISO BMFF allows several, and players skip
        # media data that no chunk offset points to.
        file.write((1).to_bytes(4, "big") + b"mdat" + (16 + filler_bytes).to_bytes(8, "big"))
        remaining = filler_bytes
        while remaining > 0:
            remaining -= file.write(block[: min(remaining, len(block))])
    small.unlink()
    return large


def _time_repeats(source: Path, workdir: Path, repeats: int) -> dict[str, list[float]]:
    """Time each operation alone, and again up to the end of an fsync of its output."""
    document = {
        "version": 1,
        "tracks": [{"id": i, "frames": list(range(250))} for i in range(40)],
    }
    target = workdir / "copy.mp4"
    timings: dict[str, list[float]] = {name: [] for name in _OPERATIONS}

    def run_cp() -> None:
        subprocess.run(["cp", str(source), str(target)], check=True)

    def run_embed() -> None:
        embed_metadata(source, target, document)

    for repeat in range(repeats):
        steps = [("cp", run_cp), ("embed_metadata", run_embed)]
        if repeat % 2:
            steps.reverse()
        for name, step in steps:
            os.sync()
            started = time.perf_counter()
            step()
            timings[name].append(time.perf_counter() - started)
            _fsync_file(target)
            timings[f"{name} + fsync"].append(time.perf_counter() - started)
            target.unlink()
    return timings


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _filesystem_type(path: Path) -> str:
    """Return the type of the filesystem mounted deepest above `path`, per /proc/mounts."""
    resolved = str(path.resolve())
    best_mount, best_type = "", "unknown"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            _, mount_point, fs_type, *_ = line.split()
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best_mount):
                best_mount, best_type = mount_point, fs_type
    return best_type


def _machine_description(path: Path) -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    filesystem = _filesystem_type(path)
    cp_version = subprocess.run(
        ["cp", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {memory_gib:.0f} GiB RAM, Linux "
        f"{platform.release()}, filesystem {filesystem}, {cp_version}, Python "
        f"{platform.python_version()}"
    )


def _report(args: argparse.Namespace, source: Path, timings: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in timings.items()}
    ratio = medians["embed_metadata"] / medians["cp"]
    ratio_fsync = medians["embed_metadata + fsync"] / medians["cp + fsync"]
    size_mib = source.stat().st_size / 2**20
    command = " ".join(shlex.quote(part) for part in ["scripts/bench_export.py", *sys.argv[1:]])
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"

    lines = [
        "## MP4 export (`embed_metadata`) compared with `cp`",
        "",
        f"- Command: `PYTHONPATH=. .venv/bin/python {command}`",
        f"- Machine: {_machine_description(source.parent)}",
        f"- File: {size_mib:.0f} MiB MP4 ({'given' if args.file else 'built'}), "
        f"{args.repeats} repeats, order alternating, `sync` (untimed) before each run",
        "- `+ fsync` rows time the same run up to the end of an fsync of the output, so they "
        "include writing the bytes to disk; the plain rows end when the data is in the page "
        "cache.",
        "",
        "| operation | median s | runs s |",
        "|---|---|---|",
    ]
    for name in _OPERATIONS:
        runs = ", ".join(f"{value:.3f}" for value in timings[name])
        lines.append(f"| {name} | {medians[name]:.3f} | {runs} |")
    lines += [
        "",
        f"Ratio embed_metadata / cp: **{ratio:.2f}** ({verdict} the target of at most "
        f"{TARGET_RATIO}); with fsync: {ratio_fsync:.2f}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
