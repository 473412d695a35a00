"""The Python side of multiproc-bench: the tutorial's Python code for the same workloads,
sizes and strategies as the Rust cells, printed as JSON on stdout.

    python3 bench.py '{"workloads": ["sum"], "workers": [2], "reps": 5, ...}'

The CLI (`cargo run --release -p multiproc-bench -- all`) writes this script into the report
folder and runs it with its own options; it needs numpy (`python3 -m pip install --user
numpy`). Progress lines go to stderr as `progress: ...`.

Backends: `serial` (plain numpy), `threads` (multiprocessing.pool.ThreadPool), `fork` and
`spawn` (multiprocessing.get_context(...).Pool). Strategies: `copy` (arguments and results
pickled), `inherit` (module-level data created before the Pool), `shm` (multiprocessing
RawArray: inherited on fork, passed through the Pool's initializer on spawn). A timed run of
a pool does what the Rust cell does: create the Pool, run the tasks, close() and join() it
(the overhead and payload workloads use a pool created beforehand). Sleeps are the tutorial's
times the `wait_scale` option (crunch only); the sum has no sleep.
"""

import ctypes
import json
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing.pool import ThreadPool

import numpy as np

import peers

# Module-level data: what forked workers inherit, and what the initializers of spawned
# workers fill in.
G = {}


def log(msg):
    print("progress: " + msg, file=sys.stderr, flush=True)


def one_more_run(times, reps, budget):
    """The Rust side's rule without its floor of three runs: another timed run while there
    are fewer than `reps` (at least one) and the runs so far, plus one more of their mean
    length, fit in `budget` seconds. (Three runs of every slow peer cell would take `all`
    past 3 minutes; the Python column is the reference, not a target.)"""
    if len(times) >= max(reps, 1):
        return False
    if not times:
        return True
    spent = sum(times)
    return spent + spent / len(times) <= budget


class Bench:
    def __init__(self, cfg):
        self.cfg = cfg
        self.cells = []

    def wants(self, backend, strategy):
        return backend in self.cfg["backends"] and (
            strategy == "-" or strategy in self.cfg["strategies"])

    def measure(self, workload, variant, backend, strategy, workers, body,
                setup=None, check=None, force=False):
        """One warm-up, then timed runs; `check(result)` raises on a wrong result. `force`:
        a peer's cell, outside the backend selection."""
        if not (force or self.wants(backend, strategy)):
            return
        cell = dict(workload=workload, variant=variant, backend=backend,
                    strategy=strategy, workers=workers)
        log("{} {} {}/{}{}".format(workload, variant, backend, strategy,
                                     "" if workers is None else " x{}".format(workers)))
        try:
            arg = setup() if setup else None
            out = body(arg)
            if check:
                check(out)
            budget = self.cfg.get("py_cell_seconds", self.cfg["cell_seconds"])
            times = []
            while one_more_run(times, self.cfg["reps"], budget):
                arg = setup() if setup else None
                t = time.perf_counter()
                out = body(arg)
                times.append(time.perf_counter() - t)
                if check:
                    check(out)
            cell.update(median_s=statistics.median(times), min_s=min(times),
                        max_s=max(times), reps=len(times))
        except Exception as e:  # a failed cell is reported, not fatal
            cell["error"] = "{}: {}".format(type(e).__name__, e)
            log("FAILED " + cell["error"])
        self.cells.append(cell)


def make_pool(backend, n, initializer=None, initargs=()):
    if backend == "threads":
        return ThreadPool(n, initializer, initargs)
    return mp.get_context(backend).Pool(n, initializer, initargs)


def with_pool(backend, n, fn, initializer=None, initargs=()):
    """Create, run, close, join: what a timed Rust cell does."""
    pool = make_pool(backend, n, initializer, initargs)
    try:
        return fn(pool)
    finally:
        pool.close()
        pool.join()


def raw_copy(values):
    raw = mp.RawArray(ctypes.c_double, values.size)
    np.frombuffer(raw, dtype=np.float64)[:] = values
    return raw


def set_globals(**kw):
    G.update(kw)


def f64s(mb):
    return mb * (1048576 // 8)


def expect(ok, what):
    if not ok:
        raise AssertionError(what)


POOLS = ["threads", "fork", "spawn"]

# ------------------------------------------------------------------------------------------
# sum: the tutorial's read-only sharing


def process_chunk(offset):
    data = G["sum"]
    return data[offset:offset + G["sum_nelems"]].sum()


def process_chunk_shm(offset):
    data = np.frombuffer(G["sum_shm"], dtype=np.float64)
    return data[offset:offset + G["sum_nelems"]].sum()


def sum_array(a):
    return a.sum()


def bench_sum(b, cfg):
    log("sum: creating the data")
    data = np.random.random(f64s(cfg["size_mb"]))
    nelems = len(data) // cfg["chunks"]
    offsets = list(range(0, len(data), nelems))
    raw = raw_copy(data)
    set_globals(sum=data, sum_shm=raw, sum_nelems=nelems)
    expected = sum(process_chunk(o) for o in offsets)
    close = lambda got: expect(abs(got - expected) <= 1e-9 * abs(expected), "wrong sum")
    v, warm = "Pool+map+close", "map, warm pool"
    b.measure("sum", v, "serial", "-", None,
              lambda _: sum(process_chunk(o) for o in offsets), check=close)
    for w in cfg["workers"]:
        if cfg["peers"]:
            peers.Peers(b).sum(w, data, offsets, nelems, process_chunk, close, v, warm)
        for backend in POOLS:
            for strategy in ["inherit", "shm"]:  # copy: 2 × 500 MB pickled, too long
                if backend == "spawn" and strategy == "inherit":
                    continue
                init = (init_sum_shm, (raw, nelems)) if strategy == "shm" else (None, ())
                if b.wants(backend, strategy):
                    pool = make_pool(backend, w, *init)
                    try:
                        b.measure("sum", warm, backend, strategy, w, lambda _: sum(pool.map(
                            *sum_task(strategy, offsets))),
                            check=close)
                    finally:
                        pool.close()
                        pool.join()
            b.measure("sum", v, backend, "copy", w, lambda _: sum(with_pool(
                backend, w, lambda p: p.map(sum_array, [
                    data[o:o + nelems].copy() if backend == "threads" else data[o:o + nelems]
                    for o in offsets]))), check=close)
            if backend != "spawn":
                b.measure("sum", v, backend, "inherit", w, lambda _: sum(with_pool(
                    backend, w, lambda p: p.map(process_chunk, offsets))), check=close)
            b.measure("sum", v, backend, "shm", w, lambda _: sum(with_pool(
                backend, w, lambda p: p.map(process_chunk_shm, offsets),
                init_sum_shm, (raw, nelems))), check=close)
    G.pop("sum", None)


def sum_task(strategy, offsets):
    """The function and arguments of a warm sum map."""
    return (process_chunk_shm if strategy == "shm" else process_chunk), offsets


def init_sum_shm(raw, nelems):
    G["sum_shm"] = raw
    G["sum_nelems"] = nelems


# ------------------------------------------------------------------------------------------
# voxels: the tutorial's read/write sharing


def vox_process_chunk(shape, idxs):
    indata = np.ctypeslib.as_array(G["vin"]).reshape(shape)
    outdata = np.ctypeslib.as_array(G["vout"]).reshape(shape)
    outdata[idxs] = indata[idxs] ** 2


def vox_slab(start, n):
    indata = np.frombuffer(G["vin"], dtype=np.float64)
    outdata = np.frombuffer(G["vout"], dtype=np.float64)
    outdata[start:start + n] = indata[start:start + n] ** 2


def vox_inherited(start, n):
    return G["vdata"][start:start + n] ** 2


def init_vox(vin, vout):
    G["vin"] = vin
    G["vout"] = vout


def index_lists(shape, nprocs):
    size = shape[0] * shape[1] * shape[2]
    nvox = int(size / nprocs)
    xlen, ylen, zlen = shape
    xs, ys, zs = np.meshgrid(np.arange(xlen), np.arange(ylen), np.arange(zlen))
    xs = xs.flatten()
    ys = ys.flatten()
    zs = zs.flatten()
    xs = [xs[nvox * i:nvox * i + nvox] for i in range(nprocs)] + [xs[nvox * nprocs:]]
    ys = [ys[nvox * i:nvox * i + nvox] for i in range(nprocs)] + [ys[nvox * nprocs:]]
    zs = [zs[nvox * i:nvox * i + nvox] for i in range(nprocs)] + [zs[nvox * nprocs:]]
    return [(shape, (x, y, z)) for x, y, z in zip(xs, ys, zs)]


def bench_voxels(b, cfg):
    side, jobs = cfg["voxel_side"], cfg["voxel_jobs"]
    shape = (side, side, side)
    size = side ** 3
    data = np.arange(size, dtype=np.float64)
    vin = raw_copy(data)
    vout = mp.RawArray(ctypes.c_double, size)
    out = np.frombuffer(vout, dtype=np.float64)
    set_globals(vin=vin, vout=vout, vdata=data)
    squares = data ** 2
    slab = -(-size // jobs)
    slabs = [(s, min(slab, size - s)) for s in range(0, size, slab)]

    def reset():
        out[:] = np.nan

    def check_shm(_):
        expect(np.array_equal(out, squares), "wrong voxels")

    def check(got):
        expect(np.array_equal(got, squares), "wrong voxels")

    serial_out = np.empty(size)
    for v in ["index lists", "slabs"]:
        b.measure("voxels", v, "serial", "-", None,
                  lambda _: np.square(data, out=serial_out),
                  check=lambda _: check(serial_out))
    for w in cfg["workers"]:
        for backend in POOLS:
            if b.wants(backend, "shm"):
                pool = make_pool(backend, w, init_vox, (vin, vout))
                try:
                    # No warm twin of the index lists on processes: Python's cost there is
                    # building and pickling 400 MB of indices, not the pool (a warm fork or
                    # spawn pool measured 2.2-2.6 s against 1.9-2.7 s cold), and those runs
                    # took ~9 s of `all`'s 3 minutes.
                    if backend == "threads":
                        b.measure("voxels", "index lists, warm pool", backend, "shm", w,
                                  lambda _: pool.starmap(vox_process_chunk,
                                                         index_lists(shape, jobs)),
                                  setup=reset, check=check_shm)
                    b.measure("voxels", "slabs, warm pool", backend, "shm", w,
                              lambda _: pool.starmap(vox_slab, slabs), setup=reset,
                              check=check_shm)
                finally:
                    pool.close()
                    pool.join()
            b.measure("voxels", "index lists", backend, "shm", w, lambda _: with_pool(
                backend, w, lambda p: p.starmap(vox_process_chunk, index_lists(shape, jobs)),
                init_vox, (vin, vout)), setup=reset, check=check_shm)
            b.measure("voxels", "slabs", backend, "shm", w, lambda _: with_pool(
                backend, w, lambda p: p.starmap(vox_slab, slabs), init_vox, (vin, vout)),
                setup=reset, check=check_shm)
            b.measure("voxels", "slabs", backend, "copy", w, lambda _: np.concatenate(
                with_pool(backend, w, lambda p: p.map(np.square, [
                    data[s:s + n].copy() if backend == "threads" else data[s:s + n]
                    for s, n in slabs]))), check=check)
            if backend != "spawn":
                b.measure("voxels", "slabs", backend, "inherit", w, lambda _: np.concatenate(
                    with_pool(backend, w, lambda p: p.starmap(vox_inherited, slabs))),
                    check=check)
    G.pop("vdata", None)


# ------------------------------------------------------------------------------------------
# crunch: Pool.map / starmap / apply_async over tasks that wait


def fnv(text, lo, span):
    h = 0xcbf29ce484222325
    for c in text.encode():
        h ^= c
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return lo + h % span


def crunch_image(arg):
    imgfile, wait_us = arg
    time.sleep(wait_us / 1e6)
    return fnv(imgfile, 1, 99)


def crunch_image_modality(imgfile, modality, wait_us):
    time.sleep(wait_us / 1e6)
    if modality == "t1":
        return fnv(imgfile, 1, 99)
    return fnv(imgfile, 100, 100)


def linear_registration(src, ref, wait_us):
    time.sleep(wait_us / 1e6)
    return np.eye(4)


def nonlinear_registration(src, ref, affine, wait_us):
    time.sleep(wait_us / 1e6)
    return fnv(src, 1, 99) + int(affine[3, 3])


STD = "MNI152_T1_2mm.nii.gz"


def bench_crunch(b, cfg):
    n, scale, w = cfg["images"], cfg["wait_scale"], cfg["crunch_workers"]
    us = lambda secs: int(round(secs * scale * 1e6))
    images = [("{:02d}.nii.gz".format(i), us(2)) for i in range(n)]
    half = n // 2
    modalities = ([("t1_{:02d}.nii.gz".format(i), "t1", us(2)) for i in range(half)]
                  + [("t2_{:02d}.nii.gz".format(i), "t2", us(2)) for i in range(n - half)])
    t1s = ["{:02d}_t1.nii.gz".format(i) for i in range(n)]

    def registration(make):
        pool = make()
        try:
            lin = [pool.apply_async(linear_registration, (t1, STD, us(1))) for t1 in t1s]
            lin = [r.get() for r in lin]
        finally:
            pool.close()
            pool.join()
        pool = make()
        try:
            nl = [pool.apply_async(nonlinear_registration, (t1, STD, aff, us(3)))
                  for t1, aff in zip(t1s, lin)]
            return [r.get() for r in nl]
        finally:
            pool.close()
            pool.join()

    def serial_registration():
        lin = [linear_registration(t1, STD, us(1)) for t1 in t1s]
        return [nonlinear_registration(t1, STD, aff, us(3)) for t1, aff in zip(t1s, lin)]

    serial = {
        "map": lambda _: [crunch_image(a) for a in images],
        "starmap": lambda _: [crunch_image_modality(*a) for a in modalities],
        "apply_async": lambda _: serial_registration(),
    }
    # The results do not depend on the waits: compute the expected ones without them.
    expected = {
        "map": [crunch_image((f, 0)) for f, _ in images],
        "starmap": [crunch_image_modality(f, m, 0) for f, m, _ in modalities],
        "apply_async": [nonlinear_registration(t1, STD, linear_registration(t1, STD, 0), 0)
                        for t1 in t1s],
    }
    for v in ["map", "starmap", "apply_async"]:
        chk = lambda got, v=v: expect(list(got) == expected[v], "wrong results")
        b.measure("crunch", v, "serial", "-", None, serial[v], check=chk)
        for backend in POOLS:
            if v == "map":
                body = lambda _: with_pool(backend, w, lambda p: p.map(crunch_image, images))
            elif v == "starmap":
                body = lambda _: with_pool(
                    backend, w, lambda p: p.starmap(crunch_image_modality, modalities))
            else:
                body = lambda _: registration(lambda: make_pool(backend, w))
            b.measure("crunch", v, backend, "copy", w, body, check=chk)


# ------------------------------------------------------------------------------------------
# overhead: trivial tasks


def inc(x):
    return x + 1


VARIANTS = ["map chunksize=1", "map default chunksize", "apply_async+get",
            "apply, one at a time"]


def bench_overhead(b, cfg):
    items = list(range(cfg["tasks"]))
    expected = [inc(x) for x in items]
    chk = lambda got: expect(list(got) == expected, "wrong results")
    apply_items = items[:min(len(items), 1000)]
    chk_apply = lambda got: expect(list(got) == expected[:len(apply_items)], "wrong results")
    if cfg["peers"]:
        for w in cfg["workers"]:
            peers.Peers(b).overhead(w, items, VARIANTS, apply_items, chk, chk_apply)
    variants = VARIANTS
    b.measure("overhead", variants[3], "serial", "-", None,
              lambda _: [inc(x) for x in apply_items], check=chk_apply)
    for v in variants[:3]:
        b.measure("overhead", v, "serial", "-", None, lambda _: [inc(x) for x in items],
                  check=chk)
    for w in cfg["workers"]:
        for backend in POOLS:
            if not b.wants(backend, "copy"):
                continue
            pool = make_pool(backend, w)
            pool.map(inc, range(w), chunksize=1)  # every worker up
            try:
                b.measure("overhead", variants[0], backend, "copy", w,
                          lambda _: pool.map(inc, items, chunksize=1), check=chk)
                b.measure("overhead", variants[1], backend, "copy", w,
                          lambda _: pool.map(inc, items), check=chk)
                b.measure("overhead", variants[2], backend, "copy", w,
                          lambda _: [r.get() for r in
                                     [pool.apply_async(inc, (x,)) for x in items]], check=chk)
                b.measure("overhead", variants[3], backend, "copy", w,
                          lambda _: [pool.apply(inc, (x,)) for x in apply_items],
                          check=chk_apply)
            finally:
                pool.close()
                pool.join()


# ------------------------------------------------------------------------------------------
# startup


def bench_startup(b, cfg):
    for w in cfg["workers"]:
        expected = sum(inc(x) for x in range(w))
        if cfg["peers"]:
            peers.Peers(b).startup(w, lambda got: expect(got == expected, "wrong result"))
        for backend in POOLS:
            b.measure("startup", "create+task+close", backend, "-", w,
                      lambda _: sum(with_pool(backend, w,
                                              lambda p: p.map(inc, range(w), chunksize=1))),
                      check=lambda got: expect(got == expected, "wrong result"))


# ------------------------------------------------------------------------------------------
# payload: a large argument and a large result


def payload_value(n):
    return np.arange(n, dtype=np.float64) * 0.5


def payload_sum_shm(n):
    return np.frombuffer(G["parg"], dtype=np.float64)[:n].sum()


def payload_make_shm(n):
    np.frombuffer(G["pres"], dtype=np.float64)[:n] = payload_value(n)


def init_payload(parg, pres):
    G["parg"] = parg
    G["pres"] = pres


def bench_payload(b, cfg):
    mb = cfg["payload_mb"]
    n = f64s(mb)
    arg = np.random.random(n)
    parg = raw_copy(arg)
    pres = raw_copy(payload_value(n))
    set_globals(parg=parg, pres=pres)
    expected_sum = arg.sum()
    expected = payload_value(n)
    va, vr = "{} MiB argument".format(mb), "{} MiB result".format(mb)
    chk_sum = lambda got: expect(abs(got - expected_sum) <= 1e-9 * abs(expected_sum), "sum")
    chk_res = lambda got: expect(np.array_equal(got, expected), "wrong result")
    b.measure("payload", va, "serial", "-", None, lambda a: sum_array(a),
              setup=lambda: arg.copy(), check=chk_sum)
    b.measure("payload", vr, "serial", "-", None, lambda _: payload_value(n), check=chk_res)
    for w in cfg["workers"]:
        for backend in POOLS:
            if not (b.wants(backend, "copy") or b.wants(backend, "shm")):
                continue
            pool = make_pool(backend, w, init_payload, (parg, pres))
            pool.map(inc, range(w), chunksize=1)
            try:
                b.measure("payload", va, backend, "copy", w,
                          lambda a: pool.apply(sum_array, (a,)),
                          setup=lambda: arg.copy(), check=chk_sum)

                def shm_arg(_):
                    np.frombuffer(parg, dtype=np.float64)[:] = arg
                    return pool.apply(payload_sum_shm, (n,))

                b.measure("payload", va, backend, "shm", w, shm_arg, check=chk_sum)
                b.measure("payload", vr, backend, "copy", w,
                          lambda _: pool.apply(payload_value, (n,)), check=chk_res)

                def shm_res(_):
                    pool.apply(payload_make_shm, (n,))
                    return np.frombuffer(pres, dtype=np.float64).copy()

                b.measure("payload", vr, backend, "shm", w, shm_res,
                          setup=lambda: np.frombuffer(pres, dtype=np.float64).fill(np.nan),
                          check=chk_res)
            finally:
                pool.close()
                pool.join()


# ------------------------------------------------------------------------------------------
# cow: writing inherited data


def cow_chunk(offset):
    data = G["cow"]
    n = G["cow_nelems"]
    data[offset:offset + n] += 1
    return data[offset:offset + n].sum()


def cow_chunk_shm(offset):
    data = np.frombuffer(G["cow_shm"], dtype=np.float64)
    n = G["cow_nelems"]
    data[offset:offset + n] += 1
    return data[offset:offset + n].sum()


def cow_copied(chunk):
    chunk += 1
    return chunk.sum(), chunk


def init_cow(raw, nelems):
    G["cow_shm"] = raw
    G["cow_nelems"] = nelems


def bench_cow(b, cfg):
    log("cow: creating the data")
    pristine = np.random.random(f64s(cfg["cow_mb"]))
    data = pristine.copy()
    nelems = len(data) // cfg["chunks"]
    offsets = list(range(0, len(data), nelems))
    raw = raw_copy(pristine)
    shm = np.frombuffer(raw, dtype=np.float64)
    set_globals(cow=data, cow_shm=raw, cow_nelems=nelems)
    expected = [(pristine[o:o + nelems] + 1).sum() for o in offsets]

    def restore():
        data[:] = pristine
        shm[:] = pristine

    def check(after, where):
        def chk(got):
            expect(np.allclose(got, expected, rtol=1e-12), "wrong task sums")
            plus = 0 if after == "unchanged" else 1
            arr = shm if where == "shm" else data
            expect(abs(arr.sum() - (pristine.sum() + plus * len(arr)))
                   <= 1e-6 * len(arr), "the parent's data is not as expected")
        return chk

    v = "write chunks"
    b.measure("cow", v, "serial", "-", None, lambda _: [cow_chunk(o) for o in offsets],
              setup=restore, check=check("plus", "data"))

    def copy_run(backend, w):
        chunks = [data[o:o + nelems].copy() if backend == "threads" else data[o:o + nelems]
                  for o in offsets]
        parts = with_pool(backend, w, lambda p: p.map(cow_copied, chunks))
        for o, (_, chunk) in zip(offsets, parts):
            data[o:o + nelems] = chunk
        return [s for s, _ in parts]

    for w in cfg["workers"]:
        for backend in POOLS:
            b.measure("cow", v, backend, "copy", w, lambda _: copy_run(backend, w),
                      setup=restore, check=check("plus", "data"))
            if backend == "fork":
                b.measure("cow", v, backend, "inherit", w, lambda _: with_pool(
                    backend, w, lambda p: p.map(cow_chunk, offsets)),
                    setup=restore, check=check("unchanged", "data"))
            b.measure("cow", v, backend, "shm", w, lambda _: with_pool(
                backend, w, lambda p: p.map(cow_chunk_shm, offsets), init_cow, (raw, nelems)),
                setup=restore, check=check("plus", "shm"))
            if b.wants(backend, "shm"):
                pool = make_pool(backend, w, init_cow, (raw, nelems))
                try:
                    b.measure("cow", v + ", warm pool", backend, "shm", w,
                              lambda _: pool.map(cow_chunk_shm, offsets),
                              setup=restore, check=check("plus", "shm"))
                finally:
                    pool.close()
                    pool.join()
    G.pop("cow", None)


WORKLOADS = {
    "sum": bench_sum,
    "voxels": bench_voxels,
    "crunch": bench_crunch,
    "overhead": bench_overhead,
    "startup": bench_startup,
    "payload": bench_payload,
    "cow": bench_cow,
}


def main():
    cfg = json.loads(sys.argv[1])
    cfg["backends"] = [x for x in cfg["backends"] if x in ("serial", "threads", "fork", "spawn")]
    cfg["peers"] = cfg.get("peers", True) and "fork" in cfg["backends"]
    b = Bench(cfg)
    stages = []
    for name in cfg["workloads"]:
        if name in WORKLOADS:
            t = time.perf_counter()
            WORKLOADS[name](b, cfg)
            stages.append((name, time.perf_counter() - t))
    json.dump({"python": sys.version.split()[0], "numpy": np.__version__, "cells": b.cells,
               "peers": {n: peers.version(n) for n in peers.NAMES}, "stages": stages},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
