"""Peak resident memory of training on an image folder: ``--loader stream`` against ``--loader memory``.

Writes N generated 32x32 RGB PNGs (smooth colour fields plus noise, so they compress like
photos, not like noise) into a temporary folder, then trains a few steps on it in a fresh
process per loader and reads that process's peak resident set (``VmHWM`` in
``/proc/self/status``) and its DataLoader workers' (polled while it trains). The stream
path is run on two folder sizes to show its peak does not grow with the data, and the same
training on the generated ``moons`` set (no data held at all) gives the process's own floor.

    python bench/stream_memory.py [--images 20000] [--small 5000] [--steps 20] [--model mlp] [--bound-mib 600]

Prints one line per run and whether each stays under ``--bound-mib`` (the bound stated in
docs/data.md); exits 1 when a stream run exceeds it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r'''
import json, os, sys, threading, time
from pathlib import Path

def hwm(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None

def children(pid):
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return out

workers, done = {}, False
def poll():
    while not done:
        for c in children(os.getpid()):
            v = hwm(c)
            if v is not None:
                workers[c] = max(workers.get(c, 0.0), v)
        time.sleep(0.2)

threading.Thread(target=poll, daemon=True).start()
import straightflow as sf
kw = json.loads(sys.argv[1])
t0 = time.perf_counter()
sf.train(progress=False, log_every=kw["steps"], ckpt_every=kw["steps"], device="cpu", **kw)
done = True
print(json.dumps({"main_peak_mib": hwm(os.getpid()), "worker_peak_mib": max(workers.values(), default=0.0),
                  "workers_seen": len(workers), "seconds": time.perf_counter() - t0}))
'''


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    for i in range(n):
        a, b, c = rng.uniform(0, 255, size=(3, 3))
        img = a[None, None] * xx[..., None] + b[None, None] * yy[..., None] + c[None, None] * (1 - xx[..., None]) * 0.5
        img = np.clip(img / 1.5 + rng.normal(0, 12, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:06d}.png")


def run(folder: Path, loader: str, workers: int, work: Path, args) -> dict:
    out = work / f"run-{loader}-{folder.name}"
    kw = dict(data=str(folder), out=str(out), loader=loader, workers=workers, steps=args.steps,
              batch_size=args.batch_size)
    mlp = args.model == "mlp" or str(folder) == "moons"  # the floor run: no image net on 2D points
    kw.update(dict(model="mlp", width=args.width, depth=2)
              if mlp else dict(model="unet", channels=16, channel_mult="1,2"))
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{loader} run failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--small", type=int, default=5_000,
                    help="a second, smaller folder for the stream path (0 skips it)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", choices=["mlp", "unet"], default="mlp",
                    help="mlp (width --width, 2 layers): the net's own memory stays small, so the data's share shows; "
                         "unet: channels 16")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--bound-mib", type=float, default=600.0,
                    help="the stated bound on the stream path's peak RSS (main process)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sf-stream-mem-"))
    try:
        t0 = time.perf_counter()
        big = work / f"images-{args.images}"
        write_images(big, args.images)
        folders = [big]
        if args.small:
            small = work / f"images-{args.small}"
            write_images(small, args.small, seed=1)
            folders.insert(0, small)
        net = f"MLP width {args.width}" if args.model == "mlp" else "UNet channels 16"
        print(f"wrote {sum(len(list(f.iterdir())) for f in folders):,} PNGs (32x32 RGB) in "
              f"{time.perf_counter() - t0:.0f} s; {args.steps} steps, batch {args.batch_size}, {net}, {args.workers} "
              "workers when streaming", flush=True)
        failed = False
        r = run(Path("moons"), "memory", 0, work, args)
        print(f"  none {'moons (no data)':>13}: main peak RSS {r['main_peak_mib']:7.0f} MiB: the process's floor "
              "(torch, the net, training)", flush=True)
        for folder, loader in [*((f, "stream") for f in folders), (big, "memory")]:
            r = run(folder, loader, args.workers if loader == "stream" else 0, work, args)
            under = r["main_peak_mib"] <= args.bound_mib
            failed |= loader == "stream" and not under
            print(f"{loader:>6} {folder.name:>13}: main peak RSS {r['main_peak_mib']:7.0f} MiB "
                  f"({'under' if under else 'OVER'} the {args.bound_mib:.0f} MiB bound), worker peak "
                  f"{r['worker_peak_mib']:5.0f} MiB x {r['workers_seen']}, {r['seconds']:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
