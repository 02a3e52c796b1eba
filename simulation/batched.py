"""The SimPy model of batched serving (``../shared/DESIGN.md``, "The batched serving model").

Instances run continuous batching: each step is scheduled by the instance's policy
(``chunked``: vLLM v1; ``prefill_priority``: vLLM v0 / DistServe's colocated baseline),
takes the time its step-latency profile gives for the step's sums, and completes every
token in it at its end. KV blocks are allocated when a step is scheduled; a request that
needs a block when none is free preempts the most recently admitted running request
(recompute). A disaggregated cluster moves each finished prefill's KV to a decode
instance that reserved blocks for it.

Simultaneous events follow DESIGN.md's exact rule, so that another engine can give the
very same times: at an instant ``t`` the SimPy events (step ends, transfer ends,
arrivals) only record themselves; one *resolve* event, scheduled after all of them,
applies step ends (instance order), then transfer ends (start order), then arrivals
(request order), then places finished prefills on decode instances (FIFO), then lets
idle instances start steps in index order (prefill pool before decode pool).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from spec import BatchedColocated, BatchedDisaggregated, Instance

from .requests import ClosedLoop, Requests

# request phases
WAITING, PREFILL, PREFILLED, TRANSFER, DECODE, DONE = range(6)
# kinds of scheduled work in a step
CHUNK, TOKEN = 0, 1
#: Inter-token gaps are counted in bins of ITL_SUB equal parts of each octave
#: ``[2^(e-1), 2^e)``, octaves from ITL_MIN_EXP (2^-20 s, about 1 us) on: a bin is at most
#: 1/256 of its values wide, so a quantile read at its middle is within 1/512 = 0.2 %.
ITL_SUB, ITL_MIN_EXP, ITL_OCTAVES = 256, -19, 40
ITL_BINS = ITL_SUB * ITL_OCTAVES


def itl_bin(gap_s: float) -> int:
    """The histogram bin of an inter-token gap: with ``gap = m 2^e``, ``m`` in [0.5, 1)
    (``math.frexp``), bin ``(e - ITL_MIN_EXP) ITL_SUB + floor((2 m - 1) ITL_SUB)``, clipped
    to the histogram. Exact, and the same in Python and compiled code."""
    if gap_s <= 0.0:
        return 0
    m, e = math.frexp(gap_s)
    k = (e - ITL_MIN_EXP) * ITL_SUB + int((2.0 * m - 1.0) * ITL_SUB)
    if k < 0:
        return 0
    return k if k < ITL_BINS else ITL_BINS - 1


def itl_bin_middle(k: int) -> float:
    """The middle of bin ``k`` (seconds): the value a histogram quantile reads."""
    e, j = divmod(k, ITL_SUB)
    return math.ldexp(0.5 * (1.0 + (j + 0.5) / ITL_SUB), e + ITL_MIN_EXP)


def _overlap(a: float, b: float, lo: float, hi: float) -> float:
    """Length of ``[a, b) & [lo, hi)``."""
    x = min(b, hi) - max(a, lo)
    return x if x > 0.0 else 0.0


@dataclass(frozen=True)
class BatchedTimes:
    """Per-request times (s) and counts of one batched run, in request order.

    ``prefill_start_s``: the first chunk's step start; ``prefill_end_s``: the end of the
    step that completed the (last) prefill; ``transfer_start_s`` / ``transfer_end_s``:
    the (last) KV transfer (NaN when colocated); ``decode_admit_s``: when the request
    joined a decode batch (colocated: its prefill's end); ``first_token_s``,
    ``last_token_s``; ``preemptions``.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prefill_start_s: np.ndarray
    prefill_end_s: np.ndarray
    transfer_start_s: np.ndarray
    transfer_end_s: np.ndarray
    decode_admit_s: np.ndarray
    first_token_s: np.ndarray
    last_token_s: np.ndarray
    preemptions: np.ndarray
    measured: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    def select(self, mask: np.ndarray) -> BatchedTimes:
        """The requests where ``mask`` holds."""
        from dataclasses import fields

        return BatchedTimes(*(getattr(self, f.name)[mask] for f in fields(self)))

    def to_xarray(self):
        """One variable per column over the dimension ``request`` (seconds, tokens)."""
        from dataclasses import fields

        import xarray as xr

        cols = {f.name: ("request", getattr(self, f.name)) for f in fields(self)}
        for name in ("ttft_s", "tpot_s", "e2e_s"):
            cols[name] = ("request", getattr(self, name))
        return xr.Dataset(cols, coords={"request": np.arange(len(self))})

    @property
    def ttft_s(self) -> np.ndarray:
        """First token time - arrival."""
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        """Last token time - arrival."""
        return self.last_token_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """``(last - first) / (O - 1)`` for ``O >= 2``, NaN for one-token outputs."""
        o = self.output_tokens
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(o >= 2, (self.last_token_s - self.first_token_s) / (o - 1), np.nan)


def check_fits(cluster: BatchedColocated | BatchedDisaggregated, prompt, output,
               first: int) -> None:
    """Refuse, by name, a request (numbered from ``first``) whose context can never fit an
    instance's KV cache, or whose prompt a whole-prompt prefill cannot hold."""
    p = np.asarray(prompt, dtype=np.int64)
    o = np.asarray(output, dtype=np.int64)
    extra = 1 if cluster.first_token == "prefill" else 0
    for kind, _count, inst in cluster.pools():
        need = p if kind == "prefill" else p + o - extra
        bad = np.flatnonzero(need > inst.kv_tokens)
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"request {first + i} (prompt {p[i]}, output {o[i]} tokens) needs {need[i]} "
                f"KV tokens; {inst.name} holds {inst.kv_tokens}: it can never be served "
                "(raise kv_capacity_tokens or drop the request)")
        if inst.policy == "prefill_priority" and kind != "decode":
            bad = np.flatnonzero(p > inst.max_num_batched_tokens)
            if len(bad):
                i = int(bad[0])
                raise ValueError(
                    f"request {first + i}: prompt of {p[i]} tokens exceeds {inst.name}."
                    f"max_num_batched_tokens = {inst.max_num_batched_tokens} under "
                    "policy prefill_priority (whole prompts only)")


@dataclass(frozen=True)
class PoolCounters:
    """One pool's counters over the measurement window, summed over its instances: steps
    started, requests in them, busy seconds, used KV block-seconds, preemptions."""

    instances: int
    kv_blocks: int
    steps: int
    batch_sum: int
    busy_s: float
    kv_block_s: float
    preemptions: int


@dataclass
class _Inst:
    """One instance's state."""

    index: int
    kind: str  # colocated | prefill | decode
    cfg: Instance
    waiting: deque  # shared with the pool under routing shared_queue
    free_blocks: int
    running: list = field(default_factory=list)
    incoming: int = 0  # decode instance: transfers placed here, not yet arrived
    busy: bool = False
    items: list = field(default_factory=list)  # the current step's work: [req, kind, n]
    tokens: int = 0  # tokens in the current step (its share of max_num_batched_tokens)
    # in the measurement window: steps started, their requests, busy seconds, used
    # block-seconds, preemptions (preemptions: every one, for the scheduler's rule)
    steps: int = 0
    batch_sum: int = 0
    busy_s: float = 0.0
    kv_block_s: float = 0.0
    preempted_in_window: int = 0
    preemptions: int = 0
    last_t: float = 0.0

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running) + self.incoming


class BatchedEngine:
    """The state machine of one batched cluster over one request stream, on SimPy's clock.

    Use :func:`simulate_batched`; the engine is exposed for tests that step it by hand.
    """

    def __init__(self, requests: Requests, cluster: BatchedColocated | BatchedDisaggregated,
                 window_s: tuple[float, float] = (0.0, math.inf)) -> None:
        import simpy

        self.window = window_s
        #: inter-token gaps of measured requests: a histogram (:func:`itl_bin`) and their
        #: exact sum
        self.itl_hist = np.zeros(ITL_BINS, dtype=np.int64)
        self.itl_sum_s = 0.0

        self.env = simpy.Environment()
        self.cluster = cluster
        self.disagg = isinstance(cluster, BatchedDisaggregated)
        self.first_token_at_prefill = cluster.first_token == "prefill"
        self.routing = cluster.routing
        self.loop = requests if isinstance(requests, ClosedLoop) else None
        if self.loop is not None:  # requests are created as clients send them
            requests = Requests._trusted(np.empty(0), np.empty(0), np.empty(0))
        n = len(requests)
        self.arrival = requests.arrival_s.tolist()
        self.p0 = [int(x) for x in requests.prompt_tokens.tolist()]
        self.out = [int(x) for x in requests.output_tokens.tolist()]
        self.client: list[int] = []
        self.prompt = list(self.p0)
        self.computed = [0] * n
        self.generated = [0] * n
        self.blocks = [0] * n
        self.where = [-1] * n  # instance holding the request's KV (or its queue)
        self.phase = [WAITING] * n
        nan = float("nan")
        self.t_prefill_start = [nan] * n
        self.t_prefill_end = [nan] * n
        self.t_transfer_start = [nan] * n
        self.t_transfer_end = [nan] * n
        self.t_decode_admit = [nan] * n
        self.t_first = [nan] * n
        self.t_last = [nan] * n
        self.n_preempt = [0] * n
        self.finished = 0
        # pools
        self.instances: list[_Inst] = []
        pools = cluster.pools()
        self.pool_of: dict[str, list[_Inst]] = {}
        for kind, count, inst in pools:
            shared = deque()
            members = []
            for _ in range(count):
                q = shared if self.routing == "shared_queue" else deque()
                members.append(_Inst(len(self.instances), kind, inst, q, inst.kv_blocks))
                self.instances.append(members[-1])
            self.pool_of[kind] = members
        self.entry = self.pool_of["colocated" if not self.disagg else "prefill"]
        self.rr = {k: 0 for k in self.pool_of}
        self.decode_fifo: deque[int] = deque()
        check_fits(cluster, self.p0, self.out, 0)
        # per-instant buckets and the resolve event
        self.ended: list[_Inst] = []
        self.transfers_done: list[tuple[int, int, int]] = []  # (seq, req, decode inst)
        self.arrived: list[int] = []
        self.resolve_pending = False
        self.transfer_seq = 0
        #: blocks reserved for a transfer: request -> (decode instance, blocks)
        self._pending_blocks: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------ checks
    # ------------------------------------------------------------------ events
    def _kick(self) -> None:
        """Schedule this instant's resolve after every event already due now."""
        if not self.resolve_pending:
            self.resolve_pending = True
            ev = self.env.event()
            ev.callbacks.append(self._resolve)
            ev.succeed()

    def _arrival_source(self):
        env = self.env
        for i, t in enumerate(self.arrival):
            delay = t - env.now
            if delay > 0.0:
                yield env.timeout(delay)
            self.arrived.append(i)
            self._kick()

    def _send(self, client: int) -> None:
        """Closed loop: ``client`` sends its next request now."""
        i = len(self.arrival)
        prompt, output = (int(x) for x in self.loop.tokens(i))  # type: ignore[union-attr]
        check_fits(self.cluster, [prompt], [output], i)
        nan = math.nan
        for col, value in ((self.arrival, self.env.now), (self.p0, prompt), (self.out, output),
                           (self.client, client), (self.prompt, prompt), (self.computed, 0),
                           (self.generated, 0), (self.blocks, 0), (self.where, -1),
                           (self.phase, WAITING), (self.t_prefill_start, nan),
                           (self.t_prefill_end, nan), (self.t_transfer_start, nan),
                           (self.t_transfer_end, nan), (self.t_decode_admit, nan),
                           (self.t_first, nan), (self.t_last, nan), (self.n_preempt, 0)):
            col.append(value)
        self.arrived.append(i)
        self._kick()

    def _next_from(self, client: int) -> None:
        """Closed loop: the client's request is done; it thinks, then sends the next one
        (if that is before the end of arrivals)."""
        loop = self.loop
        think = loop.think_s()  # type: ignore[union-attr]
        if self.env.now + think >= loop.horizon_s:  # type: ignore[union-attr]
            return
        if think == 0.0:
            self._send(client)  # joins this instant's arrivals (after the step ends)
        else:
            ev = self.env.timeout(think)
            ev.callbacks.append(lambda _e, c=client: self._send(c))

    def _on_step_end(self, inst: _Inst) -> None:
        self.ended.append(inst)
        self._kick()

    def _on_transfer_end(self, seq: int, req: int, dst: int) -> None:
        self.transfers_done.append((seq, req, dst))
        self._kick()

    # ------------------------------------------------------------------ the instant
    def _resolve(self, _event) -> None:
        t = self.env.now
        self.resolve_pending = False
        ended, self.ended = sorted(self.ended, key=lambda x: x.index), []
        for inst in ended:
            self._finish_step(inst, t)
        done, self.transfers_done = sorted(self.transfers_done), []
        for _seq, req, dst in done:
            self._join_decode(req, self.instances[dst], t)
        arrived, self.arrived = sorted(self.arrived), []
        for req in arrived:
            self._route(req, front=False)
        if self.disagg:
            self._place_prefilled(t)
        for inst in self.instances:
            if not inst.busy:
                self._start_step(inst, t)

    # ------------------------------------------------------------------ routing
    def _pick(self, members: list[_Inst], pool: str) -> _Inst:
        if self.routing == "round_robin":
            k = self.rr[pool]
            self.rr[pool] = (k + 1) % len(members)
            return members[k]
        if self.routing == "shared_queue":
            return members[0]  # the pool's one queue; bound late to an instance
        return min(members, key=lambda m: (m.outstanding, m.index))

    def _route(self, req: int, front: bool) -> None:
        """A new (or preempted) request joins an entry instance's queue."""
        inst = self._pick(self.entry, "prefill" if self.disagg else "colocated")
        self.phase[req] = WAITING
        self.where[req] = inst.index
        if front:
            inst.waiting.appendleft(req)
        else:
            inst.waiting.append(req)

    # ------------------------------------------------------------------ steps
    def _touch(self, inst: _Inst, t: float) -> None:
        """Accumulate used KV block-seconds inside the window up to ``t``."""
        used = inst.cfg.kv_blocks - inst.free_blocks
        inst.kv_block_s += used * _overlap(inst.last_t, t, *self.window)
        inst.last_t = t

    def _emit(self, req: int, t: float) -> None:
        self.generated[req] += 1
        if self.generated[req] == 1:
            self.t_first[req] = t
        elif self.window[0] <= self.arrival[req] < self.window[1]:
            gap = t - self.t_last[req]
            self.itl_sum_s += gap
            self.itl_hist[itl_bin(gap)] += 1
        self.t_last[req] = t

    def _finish_step(self, inst: _Inst, t: float) -> None:
        self._touch(inst, t)
        inst.busy = False
        for req, kind, n in inst.items:
            self.computed[req] += n
            if kind == CHUNK:
                if self.computed[req] < self.prompt[req]:
                    continue
                self.t_prefill_end[req] = t
                if inst.kind == "prefill":
                    if self.first_token_at_prefill:
                        self._emit(req, t)
                        if self.generated[req] >= self.out[req]:
                            self._finish(inst, req)
                            continue
                    inst.running.remove(req)
                    self.phase[req] = PREFILLED
                    self.decode_fifo.append(req)
                    continue
                self.phase[req] = DECODE
                if math.isnan(self.t_decode_admit[req]):
                    self.t_decode_admit[req] = t
                if self.first_token_at_prefill:
                    self._emit(req, t)
            else:
                self._emit(req, t)
            if self.generated[req] >= self.out[req]:
                self._finish(inst, req)
        inst.items = []
        inst.tokens = 0

    def _finish(self, inst: _Inst, req: int) -> None:
        inst.running.remove(req)
        inst.free_blocks += self.blocks[req]
        self.blocks[req] = 0
        self.phase[req] = DONE
        self.finished += 1
        if self.loop is not None:
            self._next_from(self.client[req])

    def _preempt(self, inst: _Inst, victim: int) -> None:
        """Evict ``victim`` (recompute): free its blocks, unschedule it, requeue at the front
        with its generated tokens added to its prompt."""
        inst.running.remove(victim)
        inst.free_blocks += self.blocks[victim]
        self.blocks[victim] = 0
        mine = [it for it in inst.items if it[0] == victim]
        if mine:
            inst.items.remove(mine[0])
            inst.tokens -= mine[0][2]
        self.computed[victim] = 0
        self.prompt[victim] = self.p0[victim] + self.generated[victim]
        self.n_preempt[victim] += 1
        inst.preemptions += 1
        if self.window[0] <= self.env.now < self.window[1]:
            inst.preempted_in_window += 1
        if inst.kind == "colocated":
            self.phase[victim] = WAITING
            inst.waiting.appendleft(victim)
        else:  # decode instance: back to the front of the prefill pool's queue
            self._route(victim, front=True)

    def _grow(self, inst: _Inst, req: int, tokens: int) -> bool:
        """Give ``req`` blocks for ``tokens`` cached tokens, preempting the most recently
        admitted running requests while none are free. False if ``req`` itself went."""
        need = inst.cfg.blocks_for(tokens) - self.blocks[req]
        while need > inst.free_blocks:
            victim = inst.running[-1]
            self._preempt(inst, victim)
            if victim == req:
                return False
        inst.free_blocks -= need
        self.blocks[req] += need
        return True

    def _admit(self, inst: _Inst, req: int, tokens: int, blocks: int, t: float) -> None:
        """The head of ``inst``'s queue joins its batch with a first chunk of ``tokens``."""
        inst.waiting.popleft()
        inst.running.append(req)
        self.where[req] = inst.index
        self.phase[req] = PREFILL
        if math.isnan(self.t_prefill_start[req]):
            self.t_prefill_start[req] = t
        inst.free_blocks -= blocks
        self.blocks[req] = blocks
        self._put(inst, req, CHUNK, tokens)

    def _put(self, inst: _Inst, req: int, kind: int, tokens: int) -> None:
        """Schedule ``tokens`` of ``req``'s work in ``inst``'s coming step."""
        inst.items.append([req, kind, tokens])
        inst.tokens += tokens

    def _schedule_chunked(self, inst: _Inst, t: float) -> None:
        cfg = inst.cfg
        limit = cfg.max_num_batched_tokens
        cap = cfg.long_prefill_token_threshold or limit
        preempted = inst.preemptions
        # running decodes first, one token each (a preempted request's phase is WAITING)
        for req in list(inst.running):
            if inst.tokens >= limit:
                break
            if self.phase[req] == DECODE and self._grow(inst, req, self.computed[req] + 1):
                self._put(inst, req, TOKEN, 1)
        # then unfinished prefills
        for req in list(inst.running):
            if inst.tokens >= limit:
                break
            if self.phase[req] != PREFILL:
                continue
            chunk = min(self.prompt[req] - self.computed[req], limit - inst.tokens, cap)
            if self._grow(inst, req, self.computed[req] + chunk):
                self._put(inst, req, CHUNK, chunk)
        if inst.preemptions != preempted:
            return  # in a step that preempted, no waiting request is admitted (vLLM v1)
        # then waiting requests, FCFS
        while inst.waiting and inst.tokens < limit and len(inst.running) < cfg.max_num_seqs:
            req = inst.waiting[0]
            chunk = min(self.prompt[req], limit - inst.tokens, cap)
            need = cfg.blocks_for(chunk)
            if need > inst.free_blocks:
                break
            self._admit(inst, req, chunk, need, t)

    def _schedule_prefill_priority(self, inst: _Inst, t: float) -> None:
        cfg = inst.cfg
        while inst.waiting and len(inst.running) < cfg.max_num_seqs:
            req = inst.waiting[0]
            length = self.prompt[req]
            if inst.tokens and inst.tokens + length > cfg.max_num_batched_tokens:
                break
            need = cfg.blocks_for(length)
            if need > inst.free_blocks:
                break
            self._admit(inst, req, length, need, t)
        if inst.items:
            return  # a prefill-only step
        for req in list(inst.running):
            if self.phase[req] == DECODE and self._grow(inst, req, self.computed[req] + 1):
                self._put(inst, req, TOKEN, 1)

    def _schedule_decode(self, inst: _Inst) -> None:
        """A decode instance: decode-only steps over its running requests (the token
        budget caps them under ``chunked``)."""
        limit = (inst.cfg.max_num_batched_tokens if inst.cfg.policy == "chunked"
                 else len(inst.running))
        for req in list(inst.running):
            if inst.tokens >= limit:
                break
            if self.phase[req] == DECODE and self._grow(inst, req, self.computed[req] + 1):
                self._put(inst, req, TOKEN, 1)

    def _start_step(self, inst: _Inst, t: float) -> None:
        self._touch(inst, t)
        if inst.kind == "decode":
            self._schedule_decode(inst)
        elif inst.cfg.policy == "chunked":
            self._schedule_chunked(inst, t)
        else:
            self._schedule_prefill_priority(inst, t)
        if not inst.items:
            return
        n_p = s_l = s_l2 = s_lx = s_x = n_d = s_c = 0
        for req, kind, n in inst.items:
            done = self.computed[req]
            if kind == CHUNK:
                n_p += 1
                s_l += n
                s_l2 += n * n
                s_lx += n * done
                s_x += done
            else:
                n_d += 1
                s_c += done + 1
        dur = inst.cfg.step_profile.step_time_s(n_p, float(s_l), float(s_l2), float(s_lx),
                                                 float(s_x), n_d, float(s_c))
        if not dur > 0.0:
            raise ValueError(f"{inst.cfg.name}: profile {inst.cfg.step_profile.name!r} gives "
                             f"a step of {dur!r} s; steps must take > 0 s")
        inst.busy = True
        inst.busy_s += _overlap(t, t + dur, *self.window)
        if self.window[0] <= t < self.window[1]:
            inst.steps += 1
            inst.batch_sum += len(inst.items)
        ev = self.env.timeout(dur)
        ev.callbacks.append(lambda _e, inst=inst: self._on_step_end(inst))

    # ------------------------------------------------------------------ disaggregation
    def _place_prefilled(self, t: float) -> None:
        """Finished prefills, strictly in FIFO order, to the decode instance with room and
        the fewest outstanding requests (lowest index on ties); the transfer starts."""
        decode = self.pool_of["decode"]
        cluster = self.cluster
        while self.decode_fifo:
            req = self.decode_fifo[0]
            need = decode[0].cfg.blocks_for(self.computed[req])
            room = [m for m in decode if m.free_blocks >= need
                    and len(m.running) + m.incoming < m.cfg.max_num_seqs]
            if not room:
                return
            dst = min(room, key=lambda m: (m.outstanding, m.index))
            self.decode_fifo.popleft()
            self._touch(dst, t)
            dst.free_blocks -= need
            dst.incoming += 1
            self.phase[req] = TRANSFER
            self.t_transfer_start[req] = t
            dur = cluster.transfer_s(self.computed[req])  # type: ignore[union-attr]
            seq = self.transfer_seq
            self.transfer_seq += 1
            self._pending_blocks[req] = (dst.index, need)
            if dur > 0.0:
                ev = self.env.timeout(dur)
                ev.callbacks.append(
                    lambda _e, s=seq, r=req, d=dst.index: self._on_transfer_end(s, r, d))
            else:
                self._join_decode(req, dst, t)

    def _join_decode(self, req: int, dst: _Inst, t: float) -> None:
        """The KV has arrived: free it on the prefill instance, join the decode batch."""
        src = self.instances[self.where[req]]
        self._touch(src, t)
        src.free_blocks += self.blocks[req]
        self.blocks[req] = self._pending_blocks.pop(req)[1]
        dst.incoming -= 1
        dst.running.append(req)
        self.where[req] = dst.index
        self.phase[req] = DECODE
        self.t_transfer_end[req] = t
        if math.isnan(self.t_decode_admit[req]):
            self.t_decode_admit[req] = t

    def counters(self) -> dict[str, PoolCounters]:
        """Per pool, the window counters summed over its instances."""
        out = {}
        for pool, members in self.pool_of.items():
            out[pool] = PoolCounters(
                instances=len(members), kv_blocks=members[0].cfg.kv_blocks,
                steps=sum(x.steps for x in members),
                batch_sum=sum(x.batch_sum for x in members),
                busy_s=sum(x.busy_s for x in members),
                kv_block_s=sum(x.kv_block_s for x in members),
                preemptions=sum(x.preempted_in_window for x in members))
        return out

    # ------------------------------------------------------------------ run
    def run(self) -> BatchedTimes:
        if self.loop is None:
            self.env.process(self._arrival_source())
        else:
            for client in range(self.loop.clients):
                self._send(client)
        self.env.run()
        n = len(self.arrival)
        if self.finished != n:
            raise RuntimeError(f"batched run ended with {n - self.finished} of {n} requests "
                               "unfinished (a scheduling deadlock: please report it)")
        f = np.asarray
        return BatchedTimes(
            f(self.arrival, dtype=float), f(self.p0, dtype=float), f(self.out, dtype=float),
            f(self.t_prefill_start), f(self.t_prefill_end), f(self.t_transfer_start),
            f(self.t_transfer_end), f(self.t_decode_admit), f(self.t_first), f(self.t_last),
            f(self.n_preempt, dtype=np.int64),
            (f(self.arrival) >= self.window[0]) & (f(self.arrival) < self.window[1]))


def simulate_batched(requests: Requests | ClosedLoop,
                     cluster: BatchedColocated | BatchedDisaggregated,
                     window_s: tuple[float, float] = (0.0, math.inf)
                     ) -> tuple[BatchedTimes, BatchedEngine]:
    """Run ``requests`` through a batched cluster; per-request times and the engine (its
    instances carry, over ``window_s``, steps, busy time, batch sizes, KV block-seconds
    and preemptions; it holds the measured requests' inter-token-gap histogram)."""
    engine = BatchedEngine(requests, cluster, window_s)
    return engine.run(), engine
