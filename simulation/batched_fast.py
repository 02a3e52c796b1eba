"""The compiled engine of batched serving: the SimPy model's rules as one numba loop.

It follows :mod:`simulation.batched` function by function, with the same floating-point
operations in the same order, so every request gets the very same times (tested bit for
bit on random workloads of every policy, with preemption and transfer). What differs is
only the machinery:

- per-request state lives in a ring of slots (request ``id`` in slot ``id % K`` from its
  arrival to its end, when its times leave as one record); waiting queues, running
  batches, the items of a step and the FIFO of finished prefills are doubly linked
  lists threaded through the slots (O(1) append, prepend, pop and removal); memory
  follows the requests in flight, not the stream's length, so :func:`run_batched_fast`
  streams any number of requests;
- the clock takes the earliest of the instances' step ends, a heap of transfer ends
  ordered by (end, start sequence) and the next arrival; each instant is handled as the
  SimPy model's *resolve* handles it (step ends by instance, transfers by start order,
  arrivals by request, placement, then step starts by instance);
- arrival instants are SimPy's: ``e_i = e_{i-1} + (a_i - e_{i-1})`` (its timeouts add the
  gap to the clock), which can differ from ``a_i`` by a rounding step.

Closed loops run on the SimPy model (:func:`simulation.runner` picks it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

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


# Rows of the engine's state matrices (one row per variable, so that growing the ring
# or handing the state between calls moves a handful of arrays).
(PROMPT, P0, OUT, COMPUTED, GENERATED, BLOCKS, WHERE, PHASE, NPRE, ITEM_KIND, ITEM_N,
 PEND_DST, PEND_BLOCKS, Q_NEXT, Q_PREV, R_NEXT, R_PREV, I_NEXT, I_PREV, IDENT) = range(20)
RING_INT_ROWS = 20
#: links between request slots: rewritten when the ring grows
LINK_ROWS = (Q_NEXT, Q_PREV, R_NEXT, R_PREV, I_NEXT, I_PREV)
(ARRIVAL, T_PS, T_PE, T_TS, T_TE, T_AD, T_F, T_L) = range(8)
RING_FLOAT_ROWS = 8
(FREE, INCOMING, BUSY, TOKENS, PREEMPTIONS, STEPS, BATCH_SUM, PRE_W, R_HEAD, R_TAIL, R_LEN,
 I_HEAD, I_TAIL, I_LEN) = range(14)
INST_INT_ROWS = 14
(STEP_END, BUSY_S, KV_BLOCK_S, LAST_T) = range(4)
INST_FLOAT_ROWS = 4
(Q_HEAD, Q_TAIL, Q_LEN) = range(3)
(H_SEQ, H_SLOT, H_DST) = range(3)
(OUT_ID, OUT_NPRE, OUT_P0, OUT_OUT) = range(4)
# scalars: finished, transfer sequence, round robin, error, next arrival id, records in
# the output buffer, heap size, why the engine returned
(S_FIN, S_SEQ, S_RR, S_ERR, S_NXT, S_OUTN, S_HLEN, S_STATUS) = range(8)
#: why the engine returned: all arrivals served; it needs the next arrivals; its output
#: buffer must be emptied; the ring of request slots must grow
DONE, NEED_ARRIVALS, DRAIN, GROW = range(4)


def _core(ri, rf, mi, mf, qi, hf, hq, st, itl_hist, itl_sum, of, oi, b_arrival, b_event,
          b_p0, b_out, base, avail, final, kind, qid, block, max_seqs, budget, cap, policy,
          kv_blocks, form, coeffs, entry0, entry1, dec0, dec1, routing, first_at_prefill,
          latency, per_token, lo, hi, n_queues):
    """The engine (numba-compiled by :func:`_compiled`; plain Python otherwise).

    Resumable: every piece of state lives in the arrays passed in, and the engine returns
    (its reason in ``st[S_STATUS]``) at the top of an instant when it needs the arrivals
    after id ``avail``, when its output buffer ``of``/``oi`` could overflow, or when the
    slot ``id % K`` of an arrival due next is still held. Request ``id`` lives in slot
    ``id % K`` of the ring ``ri``/``rf`` from its arrival to its end, when its times are
    written to the output buffer and the slot is freed.

    The state rows are worked on as local copies, written back before each return: as
    views of one matrix they may alias, which stops the compiler from keeping values in
    registers (measured: the engine ran at half the speed).
    """
    m = kind.shape[0]
    ring = ri.shape[1]
    out_cap = of.shape[1]
    nan = math.nan
    prompt = ri[PROMPT].copy()
    p0 = ri[P0].copy()
    out = ri[OUT].copy()
    computed = ri[COMPUTED].copy()
    generated = ri[GENERATED].copy()
    blocks = ri[BLOCKS].copy()
    where = ri[WHERE].copy()
    phase = ri[PHASE].copy()
    n_preempt = ri[NPRE].copy()
    item_kind = ri[ITEM_KIND].copy()
    item_n = ri[ITEM_N].copy()  # -1: not in the coming step
    pend_dst = ri[PEND_DST].copy()
    pend_blocks = ri[PEND_BLOCKS].copy()
    ident = ri[IDENT].copy()  # the request in a slot, NONE when free
    # linked lists: queues (waiting and the decode FIFO), running batches, step items
    q_next = ri[Q_NEXT].copy()
    q_prev = ri[Q_PREV].copy()
    r_next = ri[R_NEXT].copy()
    r_prev = ri[R_PREV].copy()
    i_next = ri[I_NEXT].copy()
    i_prev = ri[I_PREV].copy()
    arrival = rf[ARRIVAL].copy()
    t_pre_start = rf[T_PS].copy()
    t_pre_end = rf[T_PE].copy()
    t_tr_start = rf[T_TS].copy()
    t_tr_end = rf[T_TE].copy()
    t_admit = rf[T_AD].copy()
    t_first = rf[T_F].copy()
    t_last = rf[T_L].copy()
    q_head = qi[Q_HEAD].copy()
    q_tail = qi[Q_TAIL].copy()
    q_len = qi[Q_LEN].copy()
    # instances
    free = mi[FREE].copy()
    incoming = mi[INCOMING].copy()
    busy = mi[BUSY].copy()
    tokens = mi[TOKENS].copy()
    preemptions = mi[PREEMPTIONS].copy()
    steps = mi[STEPS].copy()
    batch_sum = mi[BATCH_SUM].copy()
    preempted_in_window = mi[PRE_W].copy()
    r_head = mi[R_HEAD].copy()
    r_tail = mi[R_TAIL].copy()
    r_len = mi[R_LEN].copy()
    i_head = mi[I_HEAD].copy()
    i_tail = mi[I_TAIL].copy()
    i_len = mi[I_LEN].copy()
    step_end = mf[STEP_END].copy()
    busy_s = mf[BUSY_S].copy()
    kv_block_s = mf[KV_BLOCK_S].copy()
    last_t = mf[LAST_T].copy()
    # transfers in flight: a binary heap ordered by (end, start sequence)
    h_seq = hq[H_SEQ].copy()
    h_slot = hq[H_SLOT].copy()
    h_dst = hq[H_DST].copy()

    def save():  # the working copies back into the state (locals optimise better)
        ri[PROMPT][:] = prompt
        ri[P0][:] = p0
        ri[OUT][:] = out
        ri[COMPUTED][:] = computed
        ri[GENERATED][:] = generated
        ri[BLOCKS][:] = blocks
        ri[WHERE][:] = where
        ri[PHASE][:] = phase
        ri[NPRE][:] = n_preempt
        ri[ITEM_KIND][:] = item_kind
        ri[ITEM_N][:] = item_n
        ri[PEND_DST][:] = pend_dst
        ri[PEND_BLOCKS][:] = pend_blocks
        ri[IDENT][:] = ident
        ri[Q_NEXT][:] = q_next
        ri[Q_PREV][:] = q_prev
        ri[R_NEXT][:] = r_next
        ri[R_PREV][:] = r_prev
        ri[I_NEXT][:] = i_next
        ri[I_PREV][:] = i_prev
        rf[ARRIVAL][:] = arrival
        rf[T_PS][:] = t_pre_start
        rf[T_PE][:] = t_pre_end
        rf[T_TS][:] = t_tr_start
        rf[T_TE][:] = t_tr_end
        rf[T_AD][:] = t_admit
        rf[T_F][:] = t_first
        rf[T_L][:] = t_last
        qi[Q_HEAD][:] = q_head
        qi[Q_TAIL][:] = q_tail
        qi[Q_LEN][:] = q_len
        mi[FREE][:] = free
        mi[INCOMING][:] = incoming
        mi[BUSY][:] = busy
        mi[TOKENS][:] = tokens
        mi[PREEMPTIONS][:] = preemptions
        mi[STEPS][:] = steps
        mi[BATCH_SUM][:] = batch_sum
        mi[PRE_W][:] = preempted_in_window
        mi[R_HEAD][:] = r_head
        mi[R_TAIL][:] = r_tail
        mi[R_LEN][:] = r_len
        mi[I_HEAD][:] = i_head
        mi[I_TAIL][:] = i_tail
        mi[I_LEN][:] = i_len
        mf[STEP_END][:] = step_end
        mf[BUSY_S][:] = busy_s
        mf[KV_BLOCK_S][:] = kv_block_s
        mf[LAST_T][:] = last_t
        hq[H_SEQ][:] = h_seq
        hq[H_SLOT][:] = h_slot
        hq[H_DST][:] = h_dst

    fifo = n_queues - 1

    # ---------------------------------------------------------------- transfer heap
    def h_less(a, b):
        return hf[a] < hf[b] or (hf[a] == hf[b] and h_seq[a] < h_seq[b])

    def h_swap(a, b):
        hf[a], hf[b] = hf[b], hf[a]
        h_seq[a], h_seq[b] = h_seq[b], h_seq[a]
        h_slot[a], h_slot[b] = h_slot[b], h_slot[a]
        h_dst[a], h_dst[b] = h_dst[b], h_dst[a]

    def h_push(t, seq, r, d):
        k = st[S_HLEN]
        st[S_HLEN] += 1
        hf[k] = t
        h_seq[k] = seq
        h_slot[k] = r
        h_dst[k] = d
        while k > 0:
            p = (k - 1) // 2
            if not h_less(k, p):
                break
            h_swap(k, p)
            k = p

    def h_pop():  # drops the root (read it first)
        last = st[S_HLEN] - 1
        st[S_HLEN] = last
        h_swap(0, last)
        k = 0
        while True:
            a = 2 * k + 1
            if a >= last:
                break
            b = a + 1
            if b < last and h_less(b, a):
                a = b
            if not h_less(a, k):
                break
            h_swap(a, k)
            k = a

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
        st[S_FIN] += 1
        k = st[S_OUTN]  # the request's record leaves; its slot is free
        st[S_OUTN] = k + 1
        of[ARRIVAL, k] = arrival[r]
        of[T_PS, k] = t_pre_start[r]
        of[T_PE, k] = t_pre_end[r]
        of[T_TS, k] = t_tr_start[r]
        of[T_TE, k] = t_tr_end[r]
        of[T_AD, k] = t_admit[r]
        of[T_F, k] = t_first[r]
        of[T_L, k] = t_last[r]
        oi[OUT_ID, k] = ident[r]
        oi[OUT_NPRE, k] = n_preempt[r]
        oi[OUT_P0, k] = p0[r]
        oi[OUT_OUT, k] = out[r]
        ident[r] = NONE

    def pick():
        if routing == 1:
            k = st[S_RR]
            st[S_RR] = (k + 1) % (entry1 - entry0)
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
            st[S_ERR] = 1 + i
            return
        busy[i] = 1
        busy_s[i] += overlap(t, t + dur, lo, hi)
        if lo <= t < hi:
            steps[i] += 1
            batch_sum[i] += i_len[i]
        step_end[i] = t + dur

    def finish_step(i, t):
        touch(i, t)
        busy[i] = 0
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
            seq = st[S_SEQ]
            st[S_SEQ] += 1
            pend_dst[r] = best
            pend_blocks[r] = nb
            if dur > 0.0:
                h_push(t + dur, seq, r, best)
            else:
                join_decode(r, best, t)

    def arrive(t):
        """Route the arrivals of instant ``t`` into their slots."""
        while st[S_NXT] < avail and b_event[st[S_NXT] - base] == t:
            j = st[S_NXT]
            k = j - base
            r = j % ring
            ident[r] = j
            arrival[r] = b_arrival[k]
            p0[r] = b_p0[k]
            prompt[r] = b_p0[k]
            out[r] = b_out[k]
            computed[r] = 0
            generated[r] = 0
            blocks[r] = 0
            n_preempt[r] = 0
            item_kind[r] = 0
            item_n[r] = -1
            pend_dst[r] = NONE
            pend_blocks[r] = 0
            t_pre_start[r] = nan
            t_pre_end[r] = nan
            t_tr_start[r] = nan
            t_tr_end[r] = nan
            t_admit[r] = nan
            t_first[r] = nan
            t_last[r] = nan
            route(r, False)
            st[S_NXT] = j + 1

    # ---------------------------------------------------------------- the clock
    disagg = dec1 > dec0
    while True:
        nxt = st[S_NXT]
        if st[S_OUTN] + (nxt - st[S_FIN]) > out_cap:  # all in flight could end now
            st[S_STATUS] = DRAIN
            save()
            return
        if nxt < avail:  # the slots of the next instant's arrivals must be free
            e0 = b_event[nxt - base]
            j = nxt
            while j < avail and b_event[j - base] == e0:
                if j - nxt >= ring or ident[j % ring] != NONE:
                    st[S_STATUS] = GROW
                    save()
                    return
                j += 1
        elif not final:
            st[S_STATUS] = NEED_ARRIVALS
            save()
            return
        t = math.inf
        for i in range(m):
            if busy[i] and step_end[i] < t:
                t = step_end[i]
        if st[S_HLEN] > 0 and hf[0] < t:
            t = hf[0]
        if nxt < avail and b_event[nxt - base] < t:
            t = b_event[nxt - base]
        if t == math.inf:
            break
        for i in range(m):
            if busy[i] and step_end[i] == t:
                finish_step(i, t)
        while st[S_HLEN] > 0 and hf[0] == t:
            r = h_slot[0]
            d = h_dst[0]
            h_pop()
            join_decode(r, d, t)
        arrive(t)
        if disagg:
            place_prefilled(t)
        for i in range(m):
            if not busy[i]:
                start_step(i, t)
                if st[S_ERR]:
                    break
        if st[S_ERR]:
            break
    st[S_STATUS] = DONE
    save()


_COMPILED = None


def _compiled():
    """The numba-compiled core (compiled on first use, cached on disk)."""
    global _COMPILED
    if _COMPILED is None:
        import numba

        _COMPILED = numba.njit(cache=True)(_core)
    return _COMPILED


def arrival_events(arrival_s: np.ndarray, now: float = 0.0) -> np.ndarray:
    """SimPy's arrival instants: its arrival process waits ``a_i - now`` from the previous
    instant, so ``e_i = e_{i-1} + (a_i - e_{i-1})`` when that gap is positive (``now``:
    the instant before the first, to continue a stream)."""
    ev = np.empty_like(arrival_s)
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


#: Request slots the ring starts with (it doubles while an arrival's slot is held).
RING = 1024
#: Records the output buffer of a streamed run holds, per slot of the ring.
OUT_PER_SLOT = 4

#: Bytes a slot of the ring costs: its state rows, a transfer heap entry, and the
#: output buffer's share (:data:`OUT_PER_SLOT` records of 12 numbers).
RING_BYTES_PER_SLOT = 8 * (RING_INT_ROWS + RING_FLOAT_ROWS + 4) + OUT_PER_SLOT * 8 * 12

# One record a finished request leaves: float rows ARRIVAL .. T_L, int rows OUT_ID,
# OUT_NPRE, OUT_P0, OUT_OUT (a plain comment: as a documented alias, the docs' source
# links would point at ``builtins``).
Records = tuple[np.ndarray, np.ndarray]


def check_ring(slots: int, in_flight: int) -> None:
    """Refuse to grow the ring past the memory available: the requests in flight grow
    without bound only when the cluster cannot keep up with the arrivals."""
    from .runner import MEMORY_SHARE, available_memory_bytes

    need = slots * RING_BYTES_PER_SLOT
    have = available_memory_bytes()
    if need > MEMORY_SHARE * have:
        raise ValueError(
            f"batched run: {in_flight:,} requests in flight need {need / 2**30:,.1f} GiB, "
            f"more than {MEMORY_SHARE:.0%} of the {have / 2**30:,.1f} GiB available; the "
            "cluster is not keeping up with the arrivals (lower the rate or shorten "
            "sim_seconds)")


class _State:
    """Everything the engine carries between calls (see :func:`_core`)."""

    def __init__(self, ring: int, m: int, n_queues: int, kv_blocks: np.ndarray,
                 out_cap: int) -> None:
        i64 = np.int64
        self.ri = np.zeros((RING_INT_ROWS, ring), i64)
        self.ri[IDENT] = NONE
        self.rf = np.full((RING_FLOAT_ROWS, ring), math.nan)
        self.mi = np.zeros((INST_INT_ROWS, m), i64)
        self.mi[FREE] = kv_blocks
        for row in (R_HEAD, R_TAIL, I_HEAD, I_TAIL):
            self.mi[row] = NONE
        self.mf = np.zeros((INST_FLOAT_ROWS, m))
        self.mf[STEP_END] = math.inf
        self.qi = np.zeros((3, n_queues), i64)
        self.qi[Q_HEAD] = NONE
        self.qi[Q_TAIL] = NONE
        self.hf = np.zeros(ring)
        self.hq = np.zeros((3, ring), i64)
        self.st = np.zeros(8, i64)
        self.itl_hist = np.zeros(ITL_BINS, i64)
        self.itl_sum = np.zeros(3)  # the sum of gaps; the last gap seen and its bin
        self.of = np.empty((RING_FLOAT_ROWS, out_cap))
        self.oi = np.empty((4, out_cap), i64)

    def arrays(self) -> tuple:
        return (self.ri, self.rf, self.mi, self.mf, self.qi, self.hf, self.hq, self.st,
                self.itl_hist, self.itl_sum, self.of, self.oi)

    def take(self) -> Records:
        """The records written since the last take (copies), and an empty buffer."""
        k = int(self.st[S_OUTN])
        self.st[S_OUTN] = 0
        return self.of[:, :k].copy(), self.oi[:, :k].copy()

    def grow(self) -> None:
        """Double the ring: each request moves to slot ``id % 2K`` and every link to it
        is rewritten (the requests in flight span fewer than ``K`` ids, so none
        collide)."""
        ring = self.ri.shape[1]
        new = 2 * ring
        check_ring(new, int(np.count_nonzero(self.ri[IDENT] != NONE)))
        held = np.flatnonzero(self.ri[IDENT] != NONE)
        moved = np.full(ring + 1, NONE, np.int64)  # index -1 (NONE) maps to NONE
        moved[held] = self.ri[IDENT, held] % new
        ri = np.zeros((RING_INT_ROWS, new), np.int64)
        ri[IDENT] = NONE
        ri[:, moved[held]] = self.ri[:, held]
        for row in LINK_ROWS:
            ri[row, moved[held]] = moved[self.ri[row, held]]
        rf = np.full((RING_FLOAT_ROWS, new), math.nan)
        rf[:, moved[held]] = self.rf[:, held]
        for row in (R_HEAD, R_TAIL, I_HEAD, I_TAIL):
            self.mi[row] = moved[self.mi[row]]
        for row in (Q_HEAD, Q_TAIL):
            self.qi[row] = moved[self.qi[row]]
        h = int(self.st[S_HLEN])
        hf = np.zeros(new)
        hf[:h] = self.hf[:h]
        hq = np.zeros((3, new), np.int64)
        hq[:, :h] = self.hq[:, :h]
        hq[H_SLOT, :h] = moved[self.hq[H_SLOT, :h]]
        self.ri, self.rf, self.hf, self.hq = ri, rf, hf, hq
        k = int(self.st[S_OUTN])  # the buffer holds more than the ring: no endless drain
        of = np.empty((RING_FLOAT_ROWS, OUT_PER_SLOT * new))
        oi = np.empty((4, OUT_PER_SLOT * new), np.int64)
        of[:, :k] = self.of[:, :k]
        oi[:, :k] = self.oi[:, :k]
        self.of, self.oi = of, oi


def _settings(cluster: BatchedColocated | BatchedDisaggregated, window_s):
    """The engine's per-instance arrays and scalars, and the pools' instance ranges."""
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
    i64 = np.int64
    args = (np.array(kinds, i64), np.array(qids, i64),
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
    return args, cfgs, pools, n_queues


def run_batched_fast(blocks: Iterable[Requests],
                     cluster: BatchedColocated | BatchedDisaggregated,
                     window_s: tuple[float, float], sink: Callable[[Records], None], *,
                     ring: int | None = None, compiled: bool = True) -> FastBatchedEngine:
    """Run the compiled engine on a request stream given in pieces; each finished
    request's record goes to ``sink`` (in batches, in the order requests finish).

    Memory is that of the requests in flight (a ring of slots that doubles when an
    arrival's slot is still held) and of one output buffer, whatever the stream's length.
    The pieces are cut where the engine needs them: the arrivals of one instant are
    always routed together, so the times are those of one whole-stream run, bit for bit.
    """
    args, cfgs, pools, n_queues = _settings(cluster, window_s)
    m = len(cfgs)
    ring = RING if ring is None else ring
    state = _State(ring, m, n_queues, args[7], OUT_PER_SLOT * ring)
    core = _compiled() if compiled else _core
    empty_f, empty_i = np.empty(0), np.empty(0, np.int64)
    arrival, event, p0, out = empty_f, empty_f, empty_i, empty_i
    base = 0  # id of arrival[0]
    now = 0.0  # the last arrival instant seen
    pieces = iter(blocks)
    final = False
    avail = 0
    while True:
        core(*state.arrays(), arrival, event, p0, out, base, avail, final, *args)
        status = int(state.st[S_STATUS])
        if state.st[S_ERR]:
            inst = cfgs[int(state.st[S_ERR]) - 1]
            raise ValueError(f"{inst.name}: profile {inst.step_profile.name!r} gives a "
                             "step of <= 0 s; steps must take > 0 s")
        if status == DONE:
            break
        if status == DRAIN:
            sink(state.take())
        elif status == GROW:
            state.grow()
        else:  # NEED_ARRIVALS: drop the routed ones, append a piece (never cut a tie)
            routed = int(state.st[S_NXT]) - base
            arrival, event, p0, out = (x[routed:] for x in (arrival, event, p0, out))
            base += routed
            while True:
                piece = next(pieces, None)
                if piece is None:
                    final = True
                    avail = base + len(arrival)
                    break
                check_fits(cluster, piece.prompt_tokens, piece.output_tokens,
                           base + len(arrival))
                a = np.ascontiguousarray(piece.arrival_s, dtype=np.float64)
                ev = arrival_events(a, now)
                if len(ev):
                    now = float(ev[-1])
                arrival = np.concatenate((arrival, a))
                event = np.concatenate((event, ev))
                p0 = np.concatenate((p0, piece.prompt_tokens.astype(np.int64)))
                out = np.concatenate((out, piece.output_tokens.astype(np.int64)))
                if len(event):  # hold back the last instant's arrivals: more may follow
                    cut = int(np.searchsorted(event, event[-1], side="left"))
                    if cut > 0:
                        avail = base + cut
                        break
    sink(state.take())
    st = state.st
    if st[S_FIN] != st[S_NXT] or st[S_NXT] != base + len(arrival):
        raise RuntimeError(f"batched run ended with {int(st[S_NXT] - st[S_FIN])} of "
                           f"{int(base + len(arrival))} requests unfinished (a scheduling "
                           "deadlock: please report it)")
    counters = {"finished": st[S_FIN], "steps": state.mi[STEPS].copy(),
                "batch_sum": state.mi[BATCH_SUM].copy(), "busy_s": state.mf[BUSY_S].copy(),
                "kv_block_s": state.mf[KV_BLOCK_S].copy(),
                "preempted_in_window": state.mi[PRE_W].copy()}
    return FastBatchedEngine(cluster, pools, cfgs, counters, state.itl_hist,
                             float(state.itl_sum[0]))


def times_of(records: Records, window_s: tuple[float, float]) -> BatchedTimes:
    """A batch of records as :class:`simulation.batched.BatchedTimes` (in the order the
    requests finished; ``records[1][OUT_ID]`` numbers them)."""
    f, i = records
    a = f[ARRIVAL]
    return BatchedTimes(a, i[OUT_P0].astype(float), i[OUT_OUT].astype(float), *f[T_PS:],
                        i[OUT_NPRE], (a >= window_s[0]) & (a < window_s[1]))


def simulate_batched_fast(requests: Requests, cluster: BatchedColocated | BatchedDisaggregated,
                          window_s: tuple[float, float] = (0.0, math.inf), *,
                          compiled: bool = True) -> tuple[BatchedTimes, FastBatchedEngine]:
    """:func:`simulation.batched.simulate_batched` for open-loop streams, compiled; the
    same times and counters bit for bit. ``compiled=False`` runs the same code as plain
    Python (slow; for debugging)."""
    n = len(requests)
    cols = np.full((RING_FLOAT_ROWS, n), math.nan)
    n_pre = np.zeros(n, np.int64)

    def sink(rec: Records) -> None:
        f, i = rec
        ids = i[OUT_ID]
        cols[:, ids] = f
        n_pre[ids] = i[OUT_NPRE]

    engine = run_batched_fast((requests,), cluster, window_s, sink, compiled=compiled)
    a = np.ascontiguousarray(requests.arrival_s, dtype=np.float64)
    times = BatchedTimes(a, requests.prompt_tokens.astype(float),
                         requests.output_tokens.astype(float), *cols[T_PS:], n_pre,
                         (a >= window_s[0]) & (a < window_s[1]))
    return times, engine
