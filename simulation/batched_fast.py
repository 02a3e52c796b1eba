"""The compiled engine of batched serving: the SimPy model's rules as one numba loop.

It follows :mod:`simulation.batched` function by function, with the same floating-point
operations in the same order, so every request gets the very same times (tested bit for
bit on random workloads of every policy, with preemption and transfer). What differs is
only the machinery:

- per-request state lives in arrays; waiting queues, running batches, the items of a
  step and the FIFO of finished prefills are doubly linked lists threaded through
  per-request arrays (O(1) append, prepend, pop and removal, O(requests) memory);
- the clock takes the earliest of the instances' step ends, a heap of transfer ends
  ordered by (end, start sequence) and the next arrival; each instant is handled as the
  SimPy model's *resolve* handles it (step ends by instance, transfers by start order,
  arrivals by request, placement, then step starts by instance);
- arrival instants are SimPy's: ``e_i = e_{i-1} + (a_i - e_{i-1})`` (its timeouts add the
  gap to the clock), which can differ from ``a_i`` by a rounding step.

Closed loops run on the SimPy model (:func:`simulation.runner` picks it).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from spec import BatchedColocated, BatchedDisaggregated
from spec.profile import FORMS, step_time_s

from .batched import ITL_BINS, BatchedTimes, PoolCounters, check_fits, itl_bin
from .requests import Requests

try:  # the step and ITL-bin functions, compiled as they are (plain Python without numba)
    import numba as _numba

    _step_time_s = _numba.njit(cache=True)(step_time_s)
    _itl_bin = _numba.njit(cache=True)(itl_bin)
except ImportError:  # pragma: no cover - numba is a dependency
    _step_time_s, _itl_bin = step_time_s, itl_bin

KIND_COLOCATED, KIND_PREFILL, KIND_DECODE = 0, 1, 2
ROUTING = {"least_outstanding": 0, "round_robin": 1, "shared_queue": 2}
WAITING, PREFILL, PREFILLED, TRANSFER, DECODE, DONE = range(6)
CHUNK, TOKEN = 0, 1
NONE = -1


def _core(arrival, event, p0, out, kind, qid, block, max_seqs, budget, cap, policy, kv_blocks,
          form, coeffs, entry0, entry1, dec0, dec1, routing, first_at_prefill, latency,
          per_token, lo, hi, n_queues):
    """The engine (numba-compiled by :func:`_compiled`; plain Python otherwise)."""
    n = arrival.shape[0]
    m = kind.shape[0]
    nan = math.nan
    prompt = p0.copy()
    computed = np.zeros(n, np.int64)
    generated = np.zeros(n, np.int64)
    blocks = np.zeros(n, np.int64)
    where = np.full(n, NONE, np.int64)
    phase = np.zeros(n, np.int64)
    t_pre_start = np.full(n, nan)
    t_pre_end = np.full(n, nan)
    t_tr_start = np.full(n, nan)
    t_tr_end = np.full(n, nan)
    t_admit = np.full(n, nan)
    t_first = np.full(n, nan)
    t_last = np.full(n, nan)
    n_preempt = np.zeros(n, np.int64)
    item_kind = np.zeros(n, np.int64)
    item_n = np.full(n, -1, np.int64)  # -1: not in the coming step
    pend_dst = np.full(n, NONE, np.int64)
    pend_blocks = np.zeros(n, np.int64)
    # linked lists: queues (waiting and the decode FIFO), running batches, step items
    q_next = np.full(n, NONE, np.int64)
    q_prev = np.full(n, NONE, np.int64)
    q_head = np.full(n_queues, NONE, np.int64)
    q_tail = np.full(n_queues, NONE, np.int64)
    q_len = np.zeros(n_queues, np.int64)
    r_next = np.full(n, NONE, np.int64)
    r_prev = np.full(n, NONE, np.int64)
    r_head = np.full(m, NONE, np.int64)
    r_tail = np.full(m, NONE, np.int64)
    r_len = np.zeros(m, np.int64)
    i_next = np.full(n, NONE, np.int64)
    i_prev = np.full(n, NONE, np.int64)
    i_head = np.full(m, NONE, np.int64)
    i_tail = np.full(m, NONE, np.int64)
    i_len = np.zeros(m, np.int64)
    # instances
    free = kv_blocks.copy()
    incoming = np.zeros(m, np.int64)
    busy = np.zeros(m, np.bool_)
    step_end = np.full(m, math.inf)
    tokens = np.zeros(m, np.int64)
    preemptions = np.zeros(m, np.int64)
    steps = np.zeros(m, np.int64)
    batch_sum = np.zeros(m, np.int64)
    busy_s = np.zeros(m)
    kv_block_s = np.zeros(m)
    preempted_in_window = np.zeros(m, np.int64)
    last_t = np.zeros(m)
    itl_hist = np.zeros(ITL_BINS, np.int64)
    itl_sum = np.zeros(3)  # the sum of gaps; the last gap seen and its bin
    # scalars kept in small arrays (closures may not rebind them)
    st = np.zeros(4, np.int64)  # 0: finished, 1: transfer sequence, 2: round-robin, 3: error
    fifo = n_queues - 1
    heap = [(0.0, 0, 0, 0)]
    heap.pop()

    # ---------------------------------------------------------------- lists
    # Three families of doubly linked lists over request ids (queues q_, running batches
    # r_, the coming step's items i_), each written out. One generic set of list
    # functions taking the family's arrays was measured at half the speed (numba loses
    # its optimisations when the arrays come through the closure's arguments).
    def q_append(q, r):
        q_prev[r] = q_tail[q]
        q_next[r] = NONE
        if q_tail[q] == NONE:
            q_head[q] = r
        else:
            q_next[q_tail[q]] = r
        q_tail[q] = r
        q_len[q] += 1

    def q_appendleft(q, r):
        q_next[r] = q_head[q]
        q_prev[r] = NONE
        if q_head[q] == NONE:
            q_tail[q] = r
        else:
            q_prev[q_head[q]] = r
        q_head[q] = r
        q_len[q] += 1

    def q_popleft(q):
        r = q_head[q]
        q_head[q] = q_next[r]
        if q_head[q] == NONE:
            q_tail[q] = NONE
        else:
            q_prev[q_head[q]] = NONE
        q_len[q] -= 1
        return r

    def r_append(i, r):
        r_prev[r] = r_tail[i]
        r_next[r] = NONE
        if r_tail[i] == NONE:
            r_head[i] = r
        else:
            r_next[r_tail[i]] = r
        r_tail[i] = r
        r_len[i] += 1

    def r_remove(i, r):
        a, b = r_prev[r], r_next[r]
        if a == NONE:
            r_head[i] = b
        else:
            r_next[a] = b
        if b == NONE:
            r_tail[i] = a
        else:
            r_prev[b] = a
        r_len[i] -= 1

    def put(i, r, k, tok):
        item_kind[r] = k
        item_n[r] = tok
        i_prev[r] = i_tail[i]
        i_next[r] = NONE
        if i_tail[i] == NONE:
            i_head[i] = r
        else:
            i_next[i_tail[i]] = r
        i_tail[i] = r
        i_len[i] += 1
        tokens[i] += tok

    def item_remove(i, r):
        a, b = i_prev[r], i_next[r]
        if a == NONE:
            i_head[i] = b
        else:
            i_next[a] = b
        if b == NONE:
            i_tail[i] = a
        else:
            i_prev[b] = a
        i_len[i] -= 1
        tokens[i] -= item_n[r]
        item_n[r] = -1

    # ---------------------------------------------------------------- helpers
    def overlap(a, b, x0, x1):
        x = min(b, x1) - max(a, x0)
        return x if x > 0.0 else 0.0

    def touch(i, t):
        used = kv_blocks[i] - free[i]
        kv_block_s[i] += used * overlap(last_t[i], t, lo, hi)
        last_t[i] = t

    def blocks_for(i, tok):
        return -(-tok // block[i])

    def outstanding(i):
        return q_len[qid[i]] + r_len[i] + incoming[i]

    def emit(r, t):
        generated[r] += 1
        if generated[r] == 1:
            t_first[r] = t
        elif lo <= arrival[r] < hi:
            gap = t - t_last[r]
            itl_sum[0] += gap
            if gap != itl_sum[1]:  # most tokens of a step share the previous step's gap
                itl_sum[1] = gap
                itl_sum[2] = _itl_bin(gap)
            itl_hist[int(itl_sum[2])] += 1
        t_last[r] = t

    def finish(i, r):
        r_remove(i, r)
        free[i] += blocks[r]
        blocks[r] = 0
        phase[r] = DONE
        st[0] += 1

    def pick():
        if routing == 1:
            k = st[2]
            st[2] = (k + 1) % (entry1 - entry0)
            return entry0 + k
        if routing == 2:
            return entry0
        best = entry0
        for i in range(entry0 + 1, entry1):
            if outstanding(i) < outstanding(best):
                best = i
        return best

    def route(r, front):
        i = pick()
        phase[r] = WAITING
        where[r] = i
        if front:
            q_appendleft(qid[i], r)
        else:
            q_append(qid[i], r)

    def preempt(i, victim, now):
        r_remove(i, victim)
        free[i] += blocks[victim]
        blocks[victim] = 0
        if item_n[victim] >= 0:
            item_remove(i, victim)
        computed[victim] = 0
        prompt[victim] = p0[victim] + generated[victim]
        n_preempt[victim] += 1
        preemptions[i] += 1
        if lo <= now < hi:
            preempted_in_window[i] += 1
        if kind[i] == KIND_COLOCATED:
            phase[victim] = WAITING
            q_appendleft(qid[i], victim)
        else:
            route(victim, True)

    def grow(i, r, tok, now):
        need = blocks_for(i, tok) - blocks[r]
        while need > free[i]:
            victim = r_tail[i]
            preempt(i, victim, now)
            if victim == r:
                return False
        free[i] -= need
        blocks[r] += need
        return True

    def admit(i, r, tok, nb, t):
        q_popleft(qid[i])
        r_append(i, r)
        where[r] = i
        phase[r] = PREFILL
        if math.isnan(t_pre_start[r]):
            t_pre_start[r] = t
        free[i] -= nb
        blocks[r] = nb
        put(i, r, CHUNK, tok)

    # ---------------------------------------------------------------- scheduling
    def schedule_chunked(i, t):
        limit = budget[i]
        c = cap[i]
        before = preemptions[i]
        r = r_head[i]
        while r != NONE:
            if tokens[i] >= limit:
                break
            if phase[r] == DECODE:
                if not grow(i, r, computed[r] + 1, t):
                    break  # it preempted itself: everything after it went first
                put(i, r, TOKEN, 1)
            r = r_next[r]
        r = r_head[i]
        while r != NONE:
            if tokens[i] >= limit:
                break
            if phase[r] == PREFILL:
                chunk = min(prompt[r] - computed[r], limit - tokens[i], c)
                if not grow(i, r, computed[r] + chunk, t):
                    break
                put(i, r, CHUNK, chunk)
            r = r_next[r]
        if preemptions[i] != before:
            return
        q = qid[i]
        while q_len[q] > 0 and tokens[i] < limit and r_len[i] < max_seqs[i]:
            r = q_head[q]
            chunk = min(prompt[r], limit - tokens[i], c)
            nb = blocks_for(i, chunk)
            if nb > free[i]:
                break
            admit(i, r, chunk, nb, t)

    def schedule_prefill_priority(i, t):
        q = qid[i]
        while q_len[q] > 0 and r_len[i] < max_seqs[i]:
            r = q_head[q]
            length = prompt[r]
            if tokens[i] and tokens[i] + length > budget[i]:
                break
            nb = blocks_for(i, length)
            if nb > free[i]:
                break
            admit(i, r, length, nb, t)
        if i_len[i] > 0:
            return
        r = r_head[i]
        while r != NONE:
            if phase[r] == DECODE:
                if not grow(i, r, computed[r] + 1, t):
                    break
                put(i, r, TOKEN, 1)
            r = r_next[r]

    def schedule_decode(i, t):
        limit = budget[i] if policy[i] == 0 else r_len[i]
        r = r_head[i]
        while r != NONE:
            if tokens[i] >= limit:
                break
            if phase[r] == DECODE:
                if not grow(i, r, computed[r] + 1, t):
                    break
                put(i, r, TOKEN, 1)
            r = r_next[r]

    def start_step(i, t):
        touch(i, t)
        if kind[i] == KIND_DECODE:
            schedule_decode(i, t)
        elif policy[i] == 0:
            schedule_chunked(i, t)
        else:
            schedule_prefill_priority(i, t)
        if i_len[i] == 0:
            return
        n_p = 0
        s_l = 0
        s_l2 = 0
        s_lx = 0
        s_x = 0
        n_d = 0
        s_c = 0
        r = i_head[i]
        while r != NONE:
            done = computed[r]
            if item_kind[r] == CHUNK:
                k = item_n[r]
                n_p += 1
                s_l += k
                s_l2 += k * k
                s_lx += k * done
                s_x += done
            else:
                n_d += 1
                s_c += done + 1
            r = i_next[r]
        dur = _step_time_s(form[i], coeffs[i], n_p, float(s_l), float(s_l2), float(s_lx),
                          float(s_x), n_d, float(s_c))
        if not dur > 0.0:
            st[3] = 1 + i
            return
        busy[i] = True
        busy_s[i] += overlap(t, t + dur, lo, hi)
        if lo <= t < hi:
            steps[i] += 1
            batch_sum[i] += i_len[i]
        step_end[i] = t + dur

    def finish_step(i, t):
        touch(i, t)
        busy[i] = False
        step_end[i] = math.inf
        r = i_head[i]
        while r != NONE:
            nxt = i_next[r]
            computed[r] += item_n[r]
            fin = False
            if item_kind[r] == CHUNK:
                if computed[r] >= prompt[r]:
                    t_pre_end[r] = t
                    if kind[i] == KIND_PREFILL:
                        moved = True
                        if first_at_prefill:
                            emit(r, t)
                            if generated[r] >= out[r]:
                                finish(i, r)
                                moved = False
                        if moved:
                            r_remove(i, r)
                            phase[r] = PREFILLED
                            q_append(fifo, r)
                    else:
                        phase[r] = DECODE
                        if math.isnan(t_admit[r]):
                            t_admit[r] = t
                        if first_at_prefill:
                            emit(r, t)
                        fin = generated[r] >= out[r]
            else:
                emit(r, t)
                fin = generated[r] >= out[r]
            if fin:
                finish(i, r)
            item_n[r] = -1
            r = nxt
        i_head[i] = NONE
        i_tail[i] = NONE
        i_len[i] = 0
        tokens[i] = 0

    def join_decode(r, d, t):
        src = where[r]
        touch(src, t)
        free[src] += blocks[r]
        blocks[r] = pend_blocks[r]
        pend_dst[r] = NONE
        incoming[d] -= 1
        r_append(d, r)
        where[r] = d
        phase[r] = DECODE
        t_tr_end[r] = t
        if math.isnan(t_admit[r]):
            t_admit[r] = t

    def place_prefilled(t):
        while q_len[fifo] > 0:
            r = q_head[fifo]
            nb = blocks_for(dec0, computed[r])
            best = NONE
            for d in range(dec0, dec1):
                if free[d] >= nb and r_len[d] + incoming[d] < max_seqs[d]:
                    if best == NONE or outstanding(d) < outstanding(best):
                        best = d
            if best == NONE:
                return
            q_popleft(fifo)
            touch(best, t)
            free[best] -= nb
            incoming[best] += 1
            phase[r] = TRANSFER
            t_tr_start[r] = t
            dur = latency + computed[r] * per_token
            seq = st[1]
            st[1] += 1
            pend_dst[r] = best
            pend_blocks[r] = nb
            if dur > 0.0:
                heapq.heappush(heap, (t + dur, seq, r, best))
            else:
                join_decode(r, best, t)

    # ---------------------------------------------------------------- the clock
    nxt_arrival = 0
    disagg = dec1 > dec0
    while True:
        t = math.inf
        for i in range(m):
            if busy[i] and step_end[i] < t:
                t = step_end[i]
        if len(heap) > 0 and heap[0][0] < t:
            t = heap[0][0]
        if nxt_arrival < n and event[nxt_arrival] < t:
            t = event[nxt_arrival]
        if t == math.inf:
            break
        for i in range(m):
            if busy[i] and step_end[i] == t:
                finish_step(i, t)
        while len(heap) > 0 and heap[0][0] == t:
            _, _, r, d = heapq.heappop(heap)
            join_decode(r, d, t)
        while nxt_arrival < n and event[nxt_arrival] == t:
            route(nxt_arrival, False)
            nxt_arrival += 1
        if disagg:
            place_prefilled(t)
        for i in range(m):
            if not busy[i]:
                start_step(i, t)
                if st[3]:
                    break
        if st[3]:
            break
    return (t_pre_start, t_pre_end, t_tr_start, t_tr_end, t_admit, t_first, t_last, n_preempt,
            st, steps, batch_sum, busy_s, kv_block_s, preempted_in_window, itl_hist, itl_sum)


_COMPILED = None


def _compiled():
    """The numba-compiled core (compiled on first use, cached on disk)."""
    global _COMPILED
    if _COMPILED is None:
        import numba

        _COMPILED = numba.njit(cache=True)(_core)
    return _COMPILED


def arrival_events(arrival_s: np.ndarray) -> np.ndarray:
    """SimPy's arrival instants: its arrival process waits ``a_i - now`` from the previous
    instant, so ``e_i = e_{i-1} + (a_i - e_{i-1})`` when that gap is positive."""
    ev = np.empty_like(arrival_s)
    now = 0.0
    for i, a in enumerate(arrival_s.tolist()):
        delay = a - now
        if delay > 0.0:
            now = now + delay
        ev[i] = now
    return ev


class FastBatchedEngine:
    """What :func:`simulate_batched_fast` leaves besides the times: the per-pool window
    counters and the ITL histogram, as :class:`simulation.batched.BatchedEngine` has."""

    def __init__(self, cluster, pools, instances, counters, itl_hist, itl_sum_s) -> None:
        self.cluster = cluster
        self.disagg = isinstance(cluster, BatchedDisaggregated)
        self._pools = pools
        self._instances = instances
        self._counters = counters
        self.itl_hist = itl_hist
        self.itl_sum_s = itl_sum_s
        self.finished = int(counters["finished"])

    def counters(self) -> dict[str, PoolCounters]:
        c = self._counters
        out = {}
        for pool, (first, last, inst) in self._pools.items():
            idx = range(first, last)
            out[pool] = PoolCounters(
                instances=last - first, kv_blocks=inst.kv_blocks,
                steps=sum(int(c["steps"][i]) for i in idx),
                batch_sum=sum(int(c["batch_sum"][i]) for i in idx),
                busy_s=sum(float(c["busy_s"][i]) for i in idx),
                kv_block_s=sum(float(c["kv_block_s"][i]) for i in idx),
                preemptions=sum(int(c["preempted_in_window"][i]) for i in idx))
        return out


def simulate_batched_fast(requests: Requests, cluster: BatchedColocated | BatchedDisaggregated,
                          window_s: tuple[float, float] = (0.0, math.inf), *,
                          compiled: bool = True) -> tuple[BatchedTimes, FastBatchedEngine]:
    """:func:`simulation.batched.simulate_batched` for open-loop streams, compiled; the
    same times and counters bit for bit. ``compiled=False`` runs the same code as plain
    Python (slow; for debugging)."""
    check_fits(cluster, requests.prompt_tokens, requests.output_tokens, 0)
    kinds, qids, cfgs, pools = [], [], [], {}
    n_pools = 0
    for pool, count, inst in cluster.pools():
        first = len(kinds)
        for _ in range(count):
            kinds.append({"colocated": KIND_COLOCATED, "prefill": KIND_PREFILL,
                          "decode": KIND_DECODE}[pool])
            cfgs.append(inst)
            qids.append(len(kinds) - 1)
        pools[pool] = (first, len(kinds), inst)
        if cluster.routing == "shared_queue":
            qids[first:] = [-(n_pools + 1)] * count  # placeholder, resolved below
        n_pools += 1
    m = len(kinds)
    if cluster.routing == "shared_queue":
        qids = [m + (-q - 1) if q < 0 else q for q in qids]
    n_queues = m + n_pools + 1
    entry = pools["prefill" if "prefill" in pools else "colocated"]
    dec = pools.get("decode", (0, 0, None))
    per_token = 0.0
    latency = 0.0
    if isinstance(cluster, BatchedDisaggregated):
        latency = cluster.link_latency_s
        per_token = cluster.kv_bytes_per_token / cluster.link_bandwidth_bytes_per_s
    coeffs = np.zeros((m, max(len(f) for f in FORMS.values())))
    for i, inst in enumerate(cfgs):
        c = inst.step_profile.coeffs
        coeffs[i, :len(c)] = c
    a = np.ascontiguousarray(requests.arrival_s, dtype=np.float64)
    i64 = np.int64
    args = (a, arrival_events(a), requests.prompt_tokens.astype(i64),
            requests.output_tokens.astype(i64), np.array(kinds, i64), np.array(qids, i64),
            np.array([x.block_size for x in cfgs], i64),
            np.array([x.max_num_seqs for x in cfgs], i64),
            np.array([x.max_num_batched_tokens for x in cfgs], i64),
            np.array([x.long_prefill_token_threshold or x.max_num_batched_tokens
                      for x in cfgs], i64),
            np.array([0 if x.policy == "chunked" else 1 for x in cfgs], i64),
            np.array([x.kv_blocks for x in cfgs], i64),
            np.array([x.step_profile.form_id for x in cfgs], i64), coeffs,
            entry[0], entry[1], dec[0], dec[1], ROUTING[cluster.routing],
            cluster.first_token == "prefill", float(latency), float(per_token),
            float(window_s[0]), float(window_s[1]), n_queues)
    core = _compiled() if compiled else _core
    (t_ps, t_pe, t_ts, t_te, t_ad, t_f, t_l, n_pre, st, steps, batch_sum, busy_s, kv_block_s,
     pre_w, itl_hist, itl_sum) = core(*args)
    if st[3]:
        inst = cfgs[int(st[3]) - 1]
        raise ValueError(f"{inst.name}: profile {inst.step_profile.name!r} gives a step of "
                         "<= 0 s; steps must take > 0 s")
    n = len(a)
    if st[0] != n:
        raise RuntimeError(f"batched run ended with {n - int(st[0])} of {n} requests "
                           "unfinished (a scheduling deadlock: please report it)")
    times = BatchedTimes(a, requests.prompt_tokens.astype(float),
                         requests.output_tokens.astype(float), t_ps, t_pe, t_ts, t_te, t_ad,
                         t_f, t_l, n_pre, (a >= window_s[0]) & (a < window_s[1]))
    counters = {"finished": st[0], "steps": steps, "batch_sum": batch_sum, "busy_s": busy_s,
                "kv_block_s": kv_block_s, "preempted_in_window": pre_w}
    return times, FastBatchedEngine(cluster, pools, cfgs, counters, itl_hist,
                                    float(itl_sum[0]))
