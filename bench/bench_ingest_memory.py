"""Benchmark: ingest's peak memory on a metadata file of the real Kvasir-VQA size (58,849 rows) and of 10x that.

Each size gets a raw layout in a temporary folder: a metadata.csv of Kvasir-VQA's shape (9 of the 19 questions
per image, answers from its vocabulary, one image per 9 rows, so 6,539 and 65,389 images) whose images are hard
links to one small real JPEG (no symlinks: ingest refuses those). Each ingest runs in a fresh process that prints
its peak RSS (getrusage) and the peak of Python allocations made after start-up (tracemalloc), side by side, so
the ratio shows whether memory grows with the file. The metadata is streamed and everything remembered across
rows lives in ingest's scratch SQLite file, so the ratio should stay near 1, not 10.

    . .venv/bin/activate && python bench/bench_ingest_memory.py            # 1x and 10x (about 3 minutes)
    python bench/bench_ingest_memory.py --scales 1 2 --rows 5000           # a quick look
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL_ROWS = 58849  # Kvasir-VQA's one split (the format notes: 58,849 rows, 6,500 images)
QUESTIONS_PER_IMAGE = 9


def make_raw(raw: Path, rows: int) -> None:
    """A raw layout of `rows` Kvasir-VQA-shaped rows; every image a hard link to a 224x224 JPEG."""
    from PIL import Image

    from surgvqa.data.questions import QUESTIONS

    images = raw / "images"
    images.mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (224, 224), (190, 105, 80)).save(buf, format="JPEG", quality=90)
    links_per_master = 60000  # ext4 allows 65,000 links to one file
    answers = {"yes_no": "no", "count": "1", "colour": "pink; red", "location": "center; upper-left"}
    with (raw / "metadata.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("source", "question", "answer", "img_id"))
        for i in range(rows):
            image, k = divmod(i, QUESTIONS_PER_IMAGE)
            img_id = f"c{image:024x}"
            if k == 0:
                master = raw / f"master{image // links_per_master}.jpg"  # outside images/: only linked to
                if image % links_per_master == 0:
                    master.write_bytes(buf.getvalue())
                os.link(master, images / f"{img_id}.jpg")
            q = QUESTIONS[(image + k) % len(QUESTIONS)]
            w.writerow(("Polyps", q.text, answers.get(q.qtype, "none"), img_id))


def child(raw: Path, out: Path) -> None:
    """Run ingest on raw once and print one JSON line: peak RSS, peak traced allocations, rows and seconds."""
    import resource
    import tracemalloc

    from surgvqa.data.ingest import ingest_raw
    from surgvqa.params.schema import load_params

    params = load_params(Path("params.yaml")).ingest
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t = time.perf_counter()
    report = ingest_raw(raw, out, params)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"rows": report["rows_total"], "rows_ok": report["rows_ok"], "seconds": round(seconds, 1),
                      "rss_after_imports_mb": round(start_rss / 1024, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "peak_traced_mb": round(peak / 2**20, 2),
                      "metadata_mb": round((raw / "metadata.csv").stat().st_size / 2**20, 1)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10], help="multiples of --rows (default 1 10)")
    ap.add_argument("--rows", type=int, default=REAL_ROWS, help=f"rows at scale 1 (default {REAL_ROWS})")
    ap.add_argument("--child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for scale in args.scales:
            raw = Path(tmp) / f"raw{scale}"
            make_raw(raw, args.rows * scale)
            done = subprocess.run([sys.executable, __file__, "--child", str(raw), str(Path(tmp) / f"out{scale}")],
                                  capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            results[scale] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{scale:>3}x: {json.dumps(results[scale])}", flush=True)
    first, last = results[args.scales[0]], results[args.scales[-1]]
    print(f"\n{'':24}" + "".join(f"{f'{s}x':>14}" for s in args.scales))
    for key in ("rows", "metadata_mb", "seconds", "rss_after_imports_mb", "peak_rss_mb", "peak_traced_mb"):
        print(f"{key:24}" + "".join(f"{results[s][key]:>14}" for s in args.scales))
    print(f"\n{args.scales[-1]}x / {args.scales[0]}x: rows {last['rows'] / first['rows']:.1f}, "
          f"peak RSS {last['peak_rss_mb'] / first['peak_rss_mb']:.2f}, "
          f"peak Python allocations {last['peak_traced_mb'] / first['peak_traced_mb']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
