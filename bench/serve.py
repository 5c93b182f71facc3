"""Load test of `elmd serve` (issue 16 item 7): many concurrent chat requests against a live server on
127.0.0.1, batched serving vs the same requests answered one at a time.

One pipeline is loaded once; two servers share it: ``--max-batch`` (batched) and ``max_batch=1``
(one at a time). Each row fires ``--requests`` chat completions (half of them with an uploaded
video, every one with its own seed) from ``--concurrency`` clients at once and reports p50 / p95
latency, requests/s and errors; "same answers" checks that the batched answers equal the
one-at-a-time ones (seeded decoding). Target: batched >= 2x the one-at-a-time requests/s at 16
concurrent on the tiny preset, zero errors. Bounded: ``--time-limit`` seconds per row.

    python bench/serve.py                               # self-contained tiny run (bench/generate.py's)
    python bench/serve.py --checkpoint runs/sample/eerg

Prints a Markdown table (paste it into BENCHMARKS.md with the machine and date).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if p != str(_BENCH)]

UTTERANCES = ["你听说了吗？", "我跟你说件事。", "你猜怎么着？", "有个消息。", "今天好累啊。", "我考过了！", "下雨了。",
              "我们去吃饭吧。"]


def tiny_run(root: Path) -> tuple[Path, Path]:
    """bench/generate.py's self-contained tiny eerg run (16 dialogues, video + demonstrations)."""
    spec = importlib.util.spec_from_file_location("bench_generate", _BENCH / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run, _ = mod.tiny_run(root, 8)
    return run, root / "warm.mp4"


class Server:
    """uvicorn on a random loopback port in a thread."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


async def fire(url: str, n: int, concurrency: int, max_tokens: int, video_id: str | None, limit_s: float):
    """(latencies, answers, errors, wall seconds) of ``n`` requests, ``concurrency`` in flight."""
    import httpx

    sem, lat, answers, errors = asyncio.Semaphore(concurrency), [], [None] * n, []
    async with httpx.AsyncClient(base_url=url, timeout=limit_s, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one(k):
            async with sem:
                msg = {"role": "user", "content": UTTERANCES[k % len(UTTERANCES)]}
                body = {"messages": [{"role": "system", "content": "两个朋友在聊天。"}, msg], "seed": 1000 + k,
                        "max_tokens": max_tokens}
                if video_id and k % 2 == 0:
                    body["elmd"] = {"video_id": video_id}
                t = time.perf_counter()
                try:
                    r = await c.post("/v1/chat/completions", json=body)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                        return
                    answers[k] = (r.json()["choices"][0]["message"]["content"], r.json()["elmd"]["emotion"])
                    lat.append(time.perf_counter() - t)
                except Exception as e:  # noqa: BLE001  (counted)
                    errors.append(repr(e)[:100])
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(n))), limit_s)
        return lat, answers, errors, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="A trained run [default: a tiny run built in a temp folder].")
    ap.add_argument("--video", default=None, help="A video to upload (half the requests use it).")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=50.0)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--time-limit", type=float, default=600.0, help="Seconds a row may take.")
    args = ap.parse_args(argv)

    import httpx

    from elmd.inference import load
    from elmd.serve import ServeConfig, build

    with tempfile.TemporaryDirectory() as tmp:
        run, video = (Path(args.checkpoint), args.video) if args.checkpoint else tiny_run(Path(tmp))
        pipe = load(run)
        common = dict(page=False, max_queue=max(args.concurrency) + 8, max_wait_ms=args.max_wait_ms,
                      request_timeout_s=args.time_limit)
        backends = {"batched": build(None, ServeConfig(max_batch=args.max_batch, **common), pipe=pipe),
                    "one at a time": build(None, ServeConfig(max_batch=1, **common), pipe=pipe)}
        servers = {k: Server(app) for k, (_, app) in backends.items()}
        try:
            vids = {}
            for k, s in servers.items():
                vids[k] = httpx.post(s.url + "/v1/elmd/videos", files={"file": ("v.mp4", Path(video).read_bytes())},
                                     timeout=60).json()["id"] if video else None
            asyncio.run(fire(servers["batched"].url, 4, 4, args.max_tokens, vids["batched"], args.time_limit))  # warm-up
            rows, seen = [], {}
            plan = [("one at a time", min(args.concurrency))] + [("batched", c) for c in args.concurrency]
            for kind, conc in plan:
                engine = backends[kind][0].engine
                before = engine.stats.batches
                lat, answers, errors, wall = asyncio.run(fire(servers[kind].url, args.requests, conc, args.max_tokens,
                                                             vids[kind], args.time_limit))
                seen.setdefault(kind, answers)
                rows.append((kind, conc, lat, answers, errors, wall, engine.stats.batches - before))
        finally:
            for s in servers.values():
                s.stop()
            for b, _ in backends.values():
                b.close()
    base = next(r for r in rows if r[0] == "one at a time")
    base_rps = args.requests / base[5]
    print(f"| serving | concurrent | requests | model calls | p50 latency s | p95 latency s | requests/s | "
          f"vs one at a time | errors | same answers |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, conc, lat, answers, errors, wall, calls in rows:
        lat = sorted(lat) or [float("nan")]
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        rps = args.requests / wall
        same = "yes" if answers == base[3] else f"{sum(a == b for a, b in zip(answers, base[3]))}/{len(answers)}"
        print(f"| {kind} | {conc} | {args.requests} | {calls} | {statistics.median(lat):.2f} | {p95:.2f} | {rps:.2f} | "
              f"{rps / base_rps:.2f}x | {len(errors)} | {same} |")
        for e in errors[:3]:
            print(f"  error: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
