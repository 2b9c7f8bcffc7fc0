"""Process the sample footage end to end through the HTTP API and print the tracked objects.

Starts `mp4e serve` on the embedded defaults with the data directory `./var` (or
`MP4E_DATA_DIR`), creates an API key with `mp4e keys create`, uploads `vtest.avi` with
`autoProcess=true`, follows the job over `GET .../process/status`, then prints
`GET .../objects`. Usage: .venv/bin/python scripts/demo.py [--video PATH] [--fps 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description="Track the objects in a video through the API.")
    data_dir = Path(os.environ.get("MP4E_DATA_DIR", REPO / "var")).resolve()
    parser.add_argument(
        "--video",
        type=Path,
        default=data_dir / "samples" / "vtest.avi",
        help="Video to upload (default: the fetched vtest.avi).",
    )
    parser.add_argument("--fps", type=float, default=5, help="Sampling rate for detection.")
    parser.add_argument("--timeout-s", type=float, default=1800, help="Give up after this long.")
    args = parser.parse_args()
    if not args.video.is_file():
        print(f"{args.video} is missing; run scripts/fetch_samples first.", file=sys.stderr)
        return 2

    port = free_port()
    env = dict(os.environ, MP4E_DATA_DIR=str(data_dir), MP4E_PUBLIC_URL=f"http://127.0.0.1:{port}")
    mp4e = [sys.executable, "-m", "mp4e.cli"]
    created = subprocess.run(
        [*mp4e, "keys", "create", "--name", "demo"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    log_path = data_dir / "demo-server.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [*mp4e, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        return run_demo(f"http://127.0.0.1:{port}", key, args, log_path)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_demo(base: str, key: str, args: argparse.Namespace, log_path: Path) -> int:
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            print(f"The server did not start; see {log_path}", file=sys.stderr)
            return 1
        time.sleep(0.3)

    print(f"Uploading {args.video} to {base} ...")
    with args.video.open("rb") as handle:
        response = client.post(
            "/api/videos/upload",
            files={"file": (args.video.name, handle)},
            data={"name": args.video.stem},
        )
    response.raise_for_status()
    video_id = response.json()["id"]
    print(f"Video {video_id}: {response.json()['status']}")

    deadline = time.monotonic() + args.timeout_s
    while client.get(f"/api/videos/{video_id}").json()["status"] == "uploading":
        time.sleep(0.5)
    started = time.monotonic()
    job = client.post(f"/api/videos/{video_id}/process", json={"fps": args.fps})
    job.raise_for_status()
    print(f"Job {job.json()['jobId']} queued")
    last = None
    while True:
        status = client.get(f"/api/videos/{video_id}/process/status").json()
        line = (
            f"  {status['status']:<10} {status['progress']:5.1f}%  frame "
            f"{status['currentFrame']}/{status['totalFrames']}  objects {status['objectsDetected']}"
        )
        if line != last:
            print(line, flush=True)
            last = line
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            print("Timed out waiting for the job.", file=sys.stderr)
            return 1
        time.sleep(1)
    if status["status"] != "completed":
        print(f"The job ended as {status['status']}: {status.get('error')}", file=sys.stderr)
        return 1

    objects = client.get(f"/api/videos/{video_id}/objects").json()["objects"]
    print(f"\nTracked {len(objects)} objects in {time.monotonic() - started:.1f} s:")
    header = ("id", "label", "confidence", "firstFrame", "lastFrame", "frames")
    print("{:<22} {:<12} {:>10} {:>10} {:>9} {:>6}".format(*header))
    for obj in sorted(objects, key=lambda o: (o["label"], o["firstFrame"])):
        print(
            f"{obj['id']:<22} {obj['label']:<12} {obj['confidence']:>10.2f} "
            f"{obj['firstFrame']:>10} {obj['lastFrame']:>9} {obj['frameCount']:>6}"
        )
    document = client.get(f"/api/videos/{video_id}/metadata").json()
    sample_step = max(1, round(document["videoDetails"]["fps"] / args.fps))
    long_people = [
        oid
        for oid, obj in document["objects"].items()
        if obj["label"] == "person" and longest_run(obj["track"]["frames"], sample_step) >= 20
    ]
    vehicles = [o["id"] for o in objects if o["label"] in ("car", "truck", "bus")]
    print(f"\nperson tracks spanning at least 20 consecutive samples: {len(long_people)}")
    print(f"vehicle tracks (car, truck, bus): {len(vehicles)} {vehicles}")
    print("Full JSON: GET", f"/api/videos/{video_id}/objects")
    print(json.dumps({"videoId": video_id, "objects": len(objects)}))
    return 0


def longest_run(frames: list[int], step: int) -> int:
    """Return the longest run of samples `step` frames apart (one sample per sampling tick)."""
    best = run = 1 if frames else 0
    for previous, current in itertools.pairwise(frames):
        run = run + 1 if current - previous <= step else 1
        best = max(best, run)
    return best


if __name__ == "__main__":
    sys.exit(main())
