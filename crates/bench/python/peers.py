"""What a Python user would pick instead of multiprocessing: mpire, pebble and joblib, on the
same tasks as bench.py's startup, overhead and sum cells.

mpire and pebble run with the fork start method (the tutorial's); joblib runs its default
backend, loky, whose workers are fork+exec'd (loky has no fork), reused between calls unless
shut down. A peer that is not installed, or lacks a feature, gives an n/a cell with a note.
Cell backends: "mpire", "pebble", "joblib"; strategies as bench.py's.
"""

import importlib
import multiprocessing as mp

NAMES = ["mpire", "pebble", "joblib"]


def available():
    """{name: module or None}"""
    out = {}
    for name in NAMES:
        try:
            out[name] = importlib.import_module(name)
        except ImportError:
            out[name] = None
    return out


def version(name):
    try:
        from importlib.metadata import version as v
        return v(name)
    except Exception:  # not installed, or no metadata
        return None


def inc(x):
    return x + 1


def slice_sum(data, offset, nelems):
    return data[offset:offset + nelems].sum()


def shutdown_loky():
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)


LOKY = "loky (joblib's default) has no fork: its workers are fork+exec'd"
MISSING = "not installed"


class Peers:
    def __init__(self, bench):
        self.b = bench
        self.mods = available()

    def na(self, workload, variant, peer, strategy, w, note):
        self.b.cells.append(dict(workload=workload, variant=variant, backend=peer,
                                 strategy=strategy, workers=w, note=note))

    def measure(self, workload, variant, peer, strategy, w, body, note=None, **kw):
        if self.mods[peer] is None:
            return self.na(workload, variant, peer, strategy, w, MISSING)
        n = len(self.b.cells)
        self.b.measure(workload, variant, peer, strategy, w, body, force=True, **kw)
        if note and len(self.b.cells) > n:
            self.b.cells[-1]["note"] = note

    # -- pools ---------------------------------------------------------------------------

    def mpire_pool(self, w, keep_alive):
        return self.mods["mpire"].WorkerPool(n_jobs=w, start_method="fork",
                                             keep_alive=keep_alive)

    def pebble_pool(self, w):
        return self.mods["pebble"].ProcessPool(max_workers=w, context=mp.get_context("fork"))

    # -- startup -------------------------------------------------------------------------

    def startup(self, w, check):
        v = "create+task+close"

        def mpire(_):
            with self.mpire_pool(w, False) as p:
                return sum(p.map(inc, range(w)))

        def pebble(_):
            with self.pebble_pool(w) as p:
                return sum(p.map(inc, range(w)).result())

        def joblib(_):
            jl = self.mods["joblib"]
            out = sum(jl.Parallel(n_jobs=w)(jl.delayed(inc)(x) for x in range(w)))
            shutdown_loky()
            return out

        self.measure("startup", v, "mpire", "-", w, mpire, check=check)
        self.measure("startup", v, "pebble", "-", w, pebble, check=check)
        self.measure("startup", v, "joblib", "-", w, joblib, check=check,
                     note=LOKY + "; shut down after each run, as a pool is closed")

    # -- overhead ------------------------------------------------------------------------

    def overhead(self, w, items, variants, apply_items, check, check_apply):
        """variants: [chunksize=1, default chunksize, apply_async+get, apply one at a time]"""
        ov = "overhead"
        if self.mods["mpire"] is not None:
            with self.mpire_pool(w, True) as p:
                self.measure(ov, variants[0], "mpire", "copy", w,
                             lambda _: p.map(inc, items, chunk_size=1), check=check)
                self.measure(ov, variants[1], "mpire", "copy", w,
                             lambda _: p.map(inc, items), check=check)
                self.measure(ov, variants[2], "mpire", "copy", w, lambda _: [
                    r.get() for r in [p.apply_async(inc, (x,)) for x in items]], check=check)
                self.measure(ov, variants[3], "mpire", "copy", w, lambda _: [
                    p.apply(inc, (x,)) for x in apply_items], check=check_apply)
        else:
            for v in variants:
                self.na(ov, v, "mpire", "copy", w, MISSING)
        if self.mods["pebble"] is not None:
            p = self.pebble_pool(w)
            try:
                self.measure(ov, variants[0], "pebble", "copy", w,
                             lambda _: list(p.map(inc, items, chunksize=1).result()),
                             check=check)
                self.measure(ov, variants[1], "pebble", "copy", w,
                             lambda _: list(p.map(inc, items).result()), check=check,
                             note="pebble's map defaults to chunksize=1")
                self.measure(ov, variants[2], "pebble", "copy", w, lambda _: [
                    f.result() for f in [p.schedule(inc, args=(x,)) for x in items]],
                    check=check)
                self.measure(ov, variants[3], "pebble", "copy", w, lambda _: [
                    p.schedule(inc, args=(x,)).result() for x in apply_items],
                    check=check_apply)
            finally:
                p.close()
                p.join()
        else:
            for v in variants:
                self.na(ov, v, "pebble", "copy", w, MISSING)
        jl = self.mods["joblib"]
        if jl is not None:
            with jl.Parallel(n_jobs=w, batch_size=1) as par:
                self.measure(ov, variants[0], "joblib", "copy", w,
                             lambda _: par(jl.delayed(inc)(x) for x in items), check=check,
                             note=LOKY)
            with jl.Parallel(n_jobs=w) as par:
                self.measure(ov, variants[1], "joblib", "copy", w,
                             lambda _: par(jl.delayed(inc)(x) for x in items), check=check,
                             note=LOKY)
            shutdown_loky()
        for v in variants[2:]:
            self.na(ov, v, "joblib", "copy", w,
                    MISSING if jl is None else
                    "joblib has no per-task call: its API is Parallel over a batch")

    # -- sum -----------------------------------------------------------------------------

    def sum(self, w, data, offsets, nelems, process_chunk, check, cold, warm):
        """process_chunk(offset) reads the inherited module-level data (fork)."""
        ws = "sum"

        def mpire(_):
            with self.mpire_pool(w, False) as p:
                return sum(p.map(process_chunk, offsets))

        def pebble(_):
            with self.pebble_pool(w) as p:
                return sum(p.map(process_chunk, offsets).result())

        def joblib(_):
            jl = self.mods["joblib"]
            out = sum(jl.Parallel(n_jobs=w)(
                jl.delayed(slice_sum)(data, o, nelems) for o in offsets))
            shutdown_loky()
            return out

        memmap = (LOKY + ": the array goes as an argument, which joblib dumps to a "
                  "memory-mapped file its workers map (its automatic memmapping)")
        self.measure(ws, cold, "mpire", "inherit", w, mpire, check=check)
        self.measure(ws, cold, "pebble", "inherit", w, pebble, check=check)
        self.measure(ws, cold, "joblib", "shm", w, joblib, check=check, note=memmap)
        if self.mods["mpire"] is not None:
            with self.mpire_pool(w, True) as p:
                self.measure(ws, warm, "mpire", "inherit", w,
                             lambda _: sum(p.map(process_chunk, offsets)), check=check)
        else:
            self.na(ws, warm, "mpire", "inherit", w, MISSING)
        if self.mods["pebble"] is not None:
            p = self.pebble_pool(w)
            try:
                self.measure(ws, warm, "pebble", "inherit", w,
                             lambda _: sum(p.map(process_chunk, offsets).result()),
                             check=check)
            finally:
                p.close()
                p.join()
        else:
            self.na(ws, warm, "pebble", "inherit", w, MISSING)
        jl = self.mods["joblib"]
        if jl is not None:
            with jl.Parallel(n_jobs=w) as par:
                self.measure(ws, warm, "joblib", "shm", w, lambda _: sum(par(
                    jl.delayed(slice_sum)(data, o, nelems) for o in offsets)),
                    check=check, note=memmap)
            shutdown_loky()
        else:
            self.na(ws, warm, "joblib", "shm", w, MISSING)
