"""Formal proof (SymbiYosys through YoWASP, as ``tb/formal/test_stream_formal.py``) that
the CQ handler (``rtl/cq_handler.py``, ``CqHandler``) never passes the phase: its head
never passes the CQEs the SSD posted, it emits each posted CQE once and in order, and its
expected phase follows the NVMe phase-tag rule (``nvme-facts.md``).

The handler is proved with one backend queue (``backend_queues`` = 1) at 128 bits (one
CQE a beat), between an environment that models, from the spec and not from the RTL:

- the table entry: constant, ``valid``, a ring of 2 to ``MAX_RING`` entries at any
  16-byte aligned address below 4 KiB (so rings that cross a 4 KiB boundary are
  included), ``cq_head_init`` 0 (a freshly created CQ: the controller's tail starts at
  slot 0), any ``polling`` bit; no ``init_valid`` (reconfiguration is out of scope);
- the SSD: posts CQEs numbered 0, 1, 2, ... (the number in the CID) at its tail with the
  phase tag, 1 on the first pass and flipped at each wrap; it honours the CQ-full rule
  against the last head doorbell it saw (at most entries - 1 CQEs posted and not
  released: ``tail + 1 == head`` is full, so a doorbell is never ambiguous); every slot
  starts with phase 0 (zeroed memory; an entry never written carries a number no posted
  CQE has yet);
- the PCIe side: any ``arready``, ``awready``, ``wready``; each beat answered in order
  for the bursts requested, carrying the CQE in its slot at the time the beat is first
  offered (held, with ``rresp``, while ``rready`` is low), any ``rresp``; a doorbell lands
  (the SSD sees its value) once its address and data are both taken, then ``bvalid``
  with any ``bresp``, when the environment likes;
- MSI-X messages (any data, valid or not), ``poll`` levels, ``o_cqe`` and ``o_error``
  back-pressure: arbitrary.

Proved by k-induction (``DEPTH["prove"]`` = 1: with the auxiliary invariants below the
properties are 1-inductive), for every reachable state:

- every CQE on ``o_cqe`` is the next one the SSD posted (its CID is the count emitted so
  far: none twice, none skipped, none made up) with the expected phase tag;
- the head (CQEs taken) never passes the CQEs posted; every doorbell value is a slot
  of the ring, moves the head, and releases no more than the CQEs taken, so never more
  than the SSD posted (it never passes the SSD's tail);
- the handler's expected phase and head, in service (``chk_phase``, ``chk_slot``) and per
  queue between services (the ``heads`` memory: what was last written to it, which the
  memory is assumed to return the cycle after a read), equal the consumer's: slot = CQEs
  emitted modulo the ring, phase = 1 xor the parity of its wraps;
- the AXI requests are legal for the model: bursts inside the ring, not crossing
  4 KiB, at most 15 beats due, ``araddr`` held while waiting; doorbells are one 4-byte
  write at a time to ``cq_db_addr``.

The auxiliary invariants that make the induction close (``_invariants``) relate the
handler's internal state (reached by name in its elaborated fragment) to the model's:
the beats due (dropped ones first, then the run's, one slot after the other from the
head), the doorbell pipeline (request slot, write engine, the value the SSD saw, in
order), and the ring counts. A ``Cover`` task (depth ``DEPTH["cover"]``) reaches a wrap
consumed, a stale entry (read before it was posted) stopping the drain, and a doorbell
landing, so the proof is not vacuous; a planted bug (the phase flipped one entry before
the wrap) is caught by a bounded check.
"""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import (
    Assert,
    Assume,
    Cat,
    Const,
    Cover,
    Fragment,
    Module,
    Mux,
    ResetSignal,
    Signal,
)

from rtl.cq_handler import CqHandler
from rtl.params import EngineParams
from tb.formal.test_stream_formal import _sby

PARAMS = EngineParams(data_width=128, backend_queues=1)
# Rings of 2 to 4 entries: every wrap, full-ring and burst-cut case occurs there (bursts
# are cut at the ring end, at most 4 CQEs; up to 15 beats, several passes of the ring, in
# flight). MAX_RING = 8 proves too, but takes z3 about 6 times longer (~2.7 CPU minutes).
MAX_RING = 4
CW = 5                      # CQE counts (posted, emitted, released) modulo 32
NB = 16                     # read beats the bus model tracks (the handler has at most 15 due)
DB_ADDR = 0x0000_00F0_0000_1004
DEPTH = {"prove": 1, "cover": 12, "bmc": 8}


def _internals(frag):
    """The handler's named signals, from its elaborated fragment (names must be unique)."""
    found = {}
    for stmts in frag.statements.values():
        for stmt in stmts:
            for sig in (*stmt._lhs_signals(), *stmt._rhs_signals()):
                if sig.name:
                    assert found.setdefault(sig.name, sig) is sig, f"two signals {sig.name}"
    return found


def _module_signals(module):
    """The named signals an un-lowered ``Module`` assigns or reads."""
    found = {}

    def walk(stmts):
        for stmt in stmts:
            if hasattr(stmt, "cases"):          # a Switch: its test and every case
                for sig in stmt.test._rhs_signals():
                    found.setdefault(sig.name, sig)
                for _patterns, body, _src_loc in stmt.cases:
                    walk(body)
            elif hasattr(stmt, "_lhs_signals"):
                for sig in (*stmt._lhs_signals(), *stmt._rhs_signals()):
                    found.setdefault(sig.name, sig)

    for stmts in module._statements.values():
        walk(stmts)
    return found


class _EarlyFlip(CqHandler):
    """A broken handler: the expected phase flips one entry before the ring end."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        s = _module_signals(m)
        with m.If(s["take"]):                   # overrides the flip at the wrap
            m.d.sync += s["chk_phase"].eq(s["chk_phase"] ^ (s["chk_slot"] + 2 == s["cq_entries"]))
        return m


def _harness(dut, invariants=True, white_box=True):
    """``dut`` in the environment of the module docstring, with its properties; without
    ``white_box`` only those on the ports (the handler's head and phase are not looked
    at), without ``invariants`` no auxiliary invariants."""
    m = Module()
    frag = Fragment.get(dut, None)
    m.submodules.dut = frag
    s = _internals(frag)
    m.d.comb += Assume(~ResetSignal())
    started = Signal()
    m.d.sync += started.eq(1)

    # --- the table entry: one queue, constant ------------------------------------------------
    e = dut.bq_rd_data
    E = e.cq_entries
    base = e.cq_addr[4:12]
    m.d.comb += [Assume(e.valid), Assume(E >= 2), Assume(E <= MAX_RING),
                 Assume(e.cq_addr[:4] == 0), Assume(e.cq_addr[12:] == 0),
                 Assume(e.cq_db_addr == DB_ADDR), Assume(e.cq_head_init == 0),
                 Assume(~dut.init_valid)]
    for field in (e.polling, E, base):
        prev = Signal(len(field))
        m.d.sync += prev.eq(field)
        with m.If(started):
            m.d.comb += Assume(field == prev)

    def nxt(slot):
        return Mux(slot + 1 == E, 0, slot + 1)[:4]

    # --- the SSD: posts CQEs with the phase tag, never fills the ring ------------------------
    post = Signal()
    posted = Signal(CW)             # CQEs posted
    tail = Signal(4)                # the SSD's tail slot
    sph = Signal(init=1)            # the phase it writes
    consumed = Signal(CW)           # CQEs released by doorbells
    db_slot = Signal(4)             # the last doorbell value it saw
    pc = (posted - consumed)[:CW]
    m.d.comb += Assume(~post | (pc < E - 1))
    with m.If(post):
        m.d.sync += [posted.eq(posted + 1), tail.eq(nxt(tail)), sph.eq(sph ^ (tail + 1 == E))]

    def content(slot):
        """Phase and sequence number of the CQE in ``slot`` now."""
        this_pass = slot < tail
        return (Mux(this_pass, sph, ~sph),
                (posted - tail + slot - Mux(this_pass, 0, E))[:CW])

    # --- AXI reads: the slot of every beat due, in order; beats answered from the ring --------
    fb = [Signal(4, name=f"fb{i}") for i in range(NB)]     # fb[0]: the next beat's slot
    nf = Signal(range(NB + 1))      # beats requested (arvalid seen), not yet returned
    a_pend = Signal()               # the last burst waits for arready
    a_len = Signal(3)
    a_addr = Signal(64)
    araddr, arlen = dut.m_axi_araddr, dut.m_axi_arlen
    first_ar = dut.m_axi_arvalid & ~a_pend
    r_hs = dut.m_axi_rvalid & dut.m_axi_rready
    ar_off = (araddr[4:16] - base)[:8]
    ar_n = (arlen + 1)[:3]
    with m.If(first_ar):
        m.d.comb += [Assert(nf + ar_n <= NB), Assert(araddr[:4] == 0), Assert(araddr[16:] == 0),
                     Assert(dut.m_axi_arsize == 4), Assert(dut.m_axi_arburst == 1),
                     Assert(arlen < 4), Assert(ar_off + arlen < E),
                     Assert(araddr[4:12] + arlen < 256)]
    at = (nf - r_hs)[:5]            # where a new burst's beats go
    for i in range(NB):
        kept = Mux(r_hs, fb[i + 1] if i + 1 < NB else 0, fb[i])
        new = first_ar & (at <= i) & (i < at + ar_n)
        m.d.sync += fb[i].eq(Mux(new, (ar_off + i - at)[:4], kept))
    with m.If(a_pend):              # the address is held until taken
        m.d.comb += [Assert(dut.m_axi_arvalid), Assert(araddr == a_addr),
                     Assert(ar_n == a_len)]
    m.d.sync += [a_pend.eq(dut.m_axi_arvalid & ~dut.m_axi_arready), a_addr.eq(araddr),
                 a_len.eq(Mux(a_pend, a_len, ar_n)),
                 nf.eq(nf + Mux(first_ar, ar_n, 0) - r_hs)]
    beat_slot = fb[0]
    m.d.comb += Assume(~dut.m_axi_rvalid | (nf > Mux(a_pend, a_len, 0)))
    # the beat: the CQE at its slot when it is first offered, held while rready is low
    r_wait = Signal()
    prev_p, prev_cid, prev_resp = Signal(), Signal(CW), Signal(2)
    r_phase, r_seq = content(beat_slot)
    b_phase = Mux(r_wait, prev_p, r_phase)
    b_seq = Mux(r_wait, prev_cid, r_seq)
    m.d.sync += [r_wait.eq(dut.m_axi_rvalid & ~dut.m_axi_rready),
                 prev_p.eq(b_phase), prev_cid.eq(b_seq), prev_resp.eq(dut.m_axi_rresp)]
    m.d.comb += Assume(dut.m_axi_rdata == Cat(Const(0, 96), b_seq, Const(0, 16 - CW),
                                              b_phase, Const(0, 15)))
    with m.If(r_wait):
        m.d.comb += [Assume(dut.m_axi_rvalid), Assume(dut.m_axi_rresp == prev_resp)]

    # --- AXI writes: the CQ-head doorbell lands when address and data are in ------------------
    aw_seen, w_seen, b_due = Signal(), Signal(), Signal()
    w_val = Signal(16)
    aw_hs = dut.m_axi_awvalid & dut.m_axi_awready
    w_hs = dut.m_axi_wvalid & dut.m_axi_wready
    with m.If(aw_hs):
        m.d.comb += [Assert(dut.m_axi_awaddr == DB_ADDR & ~3), Assert(dut.m_axi_awlen == 0),
                     Assert(dut.m_axi_awsize == 2), Assert(~aw_seen), Assert(~b_due)]
        m.d.sync += aw_seen.eq(1)
    with m.If(w_hs):
        m.d.comb += [Assert(dut.m_axi_wstrb == 0xF << (DB_ADDR & 0xC)), Assert(~w_seen),
                     Assert(~b_due)]
        m.d.sync += [w_seen.eq(1), w_val.eq(dut.m_axi_wdata[:16])]
    land = (aw_hs | aw_seen) & (w_hs | w_seen) & (aw_hs | w_hs)
    db_val = Mux(w_hs, dut.m_axi_wdata[:16], w_val)
    m.d.comb += Assume(~dut.m_axi_bvalid | b_due)
    with m.If(dut.m_axi_bvalid & dut.m_axi_bready):
        m.d.sync += b_due.eq(0)

    # --- the consumer's side: CQEs emitted, in order ------------------------------------------
    emitted = Signal(CW)
    o_slot = Signal(4)              # slot of the next CQE to emit
    o_phase = Signal(init=1)        # its phase: 1 ^ parity of the wraps of the head
    o_wrap = (o_slot + 1) == E
    obuf_v = dut.o_cqe.valid        # the o_cqe register holds a CQE taken
    taken = (emitted + obuf_v)[:CW]
    t_slot = Mux(obuf_v, nxt(o_slot), o_slot)
    t_phase = Mux(obuf_v, o_phase ^ o_wrap, o_phase)
    o_hs = dut.o_cqe.valid & dut.o_cqe.ready
    cqe = dut.o_cqe.payload.cqe
    with m.If(dut.o_cqe.valid):
        m.d.comb += [Assert(cqe.cid == emitted), Assert(cqe.status.p == o_phase),
                     Assert(dut.o_cqe.payload.queue == 0)]
    with m.If(o_hs):
        m.d.sync += [emitted.eq(emitted + 1), o_slot.eq(nxt(o_slot)),
                     o_phase.eq(o_phase ^ o_wrap)]
    pt = (posted - taken)[:CW]      # CQEs posted, not yet taken
    tc = (taken - consumed)[:CW]    # CQEs taken, not yet released by a doorbell
    m.d.comb += [Assert(pc <= E - 1), Assert(tc <= pc)]

    def ahead(slot, n):             # ``slot`` + ``n`` on the ring, n < entries
        return Mux(slot + n >= E, slot + n - E, slot + n)[:4]

    def pos(slot):                  # CQEs from the last doorbell seen to ``slot``
        return Mux(slot >= db_slot, slot - db_slot, slot + E - db_slot)[:CW]

    # the doorbell never passes the SSD's tail nor the CQEs taken, and moves the head
    with m.If(land):
        m.d.comb += [Assert(db_val < E), Assert(pos(db_val) != 0), Assert(pos(db_val) <= tc)]
        m.d.sync += [aw_seen.eq(0), w_seen.eq(0), b_due.eq(1),
                     consumed.eq(consumed + pos(db_val)), db_slot.eq(db_val)]

    # --- the handler's head and expected phase ---------------------------------------------
    # Between services they are in a memory (``heads``), which a property cannot read: the
    # harness keeps what was last written to it, and the memory is assumed to return that
    # the cycle after a read (its contract; the port is not transparent).
    wr_en, wr_data = s["head_wr__en"], s["head_wr__data"]
    sh_head, sh_phase = Signal(16), Signal()        # the memory's row 0
    rd_due, rd_head, rd_phase = Signal(), Signal(16), Signal()
    with m.If(wr_en):
        m.d.sync += [sh_head.eq(wr_data[:16]), sh_phase.eq(wr_data[16])]
    m.d.sync += [rd_due.eq(s["head_rd__en"]), rd_head.eq(sh_head), rd_phase.eq(sh_phase)]
    with m.If(rd_due):
        m.d.comb += Assume(s["head_rd__data"] == Cat(rd_head, rd_phase))
    state = s["cq_state"]            # IDLE 0, LOAD 1, RUN 2, END 3
    fresh = s["fresh"]
    with m.If((state >= 2) & white_box):
        m.d.comb += [Assert(s["chk_slot"] == t_slot), Assert(s["chk_phase"] == t_phase)]
    with m.Elif(white_box):
        m.d.comb += Assert(~obuf_v)
        with m.If(fresh[0]):
            m.d.comb += [Assert(emitted == 0), Assert(o_slot == 0), Assert(o_phase)]
        with m.Else():
            m.d.comb += [Assert(sh_head == o_slot), Assert(sh_phase == o_phase)]

    if invariants:
        _invariants(m, dut, s, locals())

    # --- not vacuous ---------------------------------------------------------------------
    m.d.comb += [
        Cover(o_hs & o_wrap),                                       # a wrap consumed
        Cover(s["stop"] & ~dut.m_axi_rresp[1] & (b_phase != s["chk_phase"])),   # stale entry
        Cover(land),                                                # a doorbell
    ]

    ports = [post, dut.m_axi_arready, dut.m_axi_rvalid, dut.m_axi_rdata, dut.m_axi_rresp,
             dut.m_axi_rlast, dut.m_axi_rid, dut.m_axi_awready, dut.m_axi_wready,
             dut.m_axi_bvalid, dut.m_axi_bresp, dut.m_axi_bid, dut.i_msix.valid,
             dut.i_msix.payload, dut.poll, dut.bq_rd_data.as_value(), dut.init_valid,
             dut.init_queue, dut.o_cqe.ready, dut.o_error.ready]
    return m, ports


def _invariants(m, dut, s, h):
    """Auxiliary invariants relating the handler's state to the environment's."""
    E, nxt, ahead, pos = h["E"], h["nxt"], h["ahead"], h["pos"]
    state, started = h["state"], h["started"]
    live, due, chk_slot = s["live"], s["due"], s["chk_slot"]
    disc = (due - live)[:8]          # beats due that are dropped
    db_state = s["db_state"]         # IDLE 0, WRITE 1, RESPONSE 2, ERROR 3
    run = state == 2
    a = []
    # reset-like first state (only the first state of a trace has ``started`` low)
    with m.If(~started):
        m.d.comb += [Assert(state == 0), Assert(db_state == 0), Assert(h["fresh"][0]),
                     Assert(h["posted"] == 0), Assert(h["consumed"] == 0),
                     Assert(h["emitted"] == 0), Assert(h["nf"] == 0), Assert(~h["a_pend"]),
                     Assert(~h["r_wait"]), Assert(~s["dbq_v"]), Assert(~h["aw_seen"]),
                     Assert(~h["w_seen"]), Assert(~h["b_due"]), Assert(h["tail"] == 0),
                     Assert(h["sph"]), Assert(h["db_slot"] == 0), Assert(~s["ar_held"]),
                     Assert(live == 0), Assert(disc == 0), Assert(~s["moved"])]
    # the queue in service, its entry, the slots and counts on the ring
    a += [Assert(s["cur"] == 0), Assert(~s["cancel"]), Assert(h["tail"] < E),
          Assert(h["o_slot"] < E), Assert(h["db_slot"] < E),
          Assert(h["tail"] == ahead(h["t_slot"], h["pt"])),
          Assert(h["sph"] == h["t_phase"] ^ (h["t_slot"] + h["pt"] >= E)),
          Assert(h["t_slot"] == ahead(h["db_slot"], h["tc"])),
          Assert(due == h["nf"]), Assert(live <= due), Assert(live <= 8), Assert(disc <= 7),
          Assert(s["ar_held"] == h["a_pend"])]
    with m.If(h["fresh"][0]):
        m.d.comb += [Assert(state <= 1), Assert(h["consumed"] == 0), Assert(h["db_slot"] == 0),
                     Assert(db_state == 0), Assert(~s["dbq_v"]), Assert(~s["moved"])]
    with m.If(s["ar_held"]):
        m.d.comb += [Assert(s["ar_addr_r"] == h["a_addr"]),
                     Assert(s["ar_len_r"] == h["a_len"] - 1)]
    with m.If(state >= 2):
        m.d.comb += [Assert(s["cq_entries"] == E),
                     Assert(s["cq_addr"] == dut.bq_rd_data.cq_addr[4:]),
                     Assert(s["db_addr"] == DB_ADDR >> 2),
                     # the slots' page offsets and distances to the ring end
                     Assert(s["ar_lo"] == (h["base"] + s["ar_slot"])[:8]),
                     Assert(s["ar_left"] == E - s["ar_slot"]),
                     Assert(s["chk_lo"] == (h["base"] + chk_slot)[:8]),
                     Assert(s["chk_left"] == E - chk_slot)]
    # the registered pick (one queue: chosen whenever one is to be served); a LOAD that
    # follows a drain of the same queue takes its head and phase from the drain's registers
    a += [Assert(s["pk_bit"][0] == s["pk_any"]), Assert(~s["dbq_v"] | s["dbq_mine"])]
    with m.If((state == 1) & s["reuse"]):
        m.d.comb += [Assert(chk_slot == h["sh_head"]), Assert(s["chk_phase"] == h["sh_phase"]),
                     Assert(~h["fresh"][0])]
    with m.If((state == 1) & ~s["reuse"]):
        m.d.comb += [Assert(h["rd_due"]), Assert(h["rd_head"] == h["sh_head"]),
                     Assert(h["rd_phase"] == h["sh_phase"])]
    with m.If(~run):
        m.d.comb += Assert(live == 0)
    with m.If(state <= 1):
        m.d.comb += [Assert(~s["db_arm"]), Assert(~s["moved"])]
    with m.If(state == 3):
        m.d.comb += Assert(~s["moved"] | s["db_arm"])
    with m.If(run & ~s["run_issued"]):
        m.d.comb += Assert(live == 0)
    with m.If(run & (live == 0)):
        m.d.comb += Assert(s["ar_slot"] == chk_slot)
    with m.If(s["rd_err_p"]):
        m.d.comb += Assert(state == 3)
    # the beats due: the dropped ones first, then the run's, one slot after the other
    fb, nf = h["fb"], h["nf"]
    for i in range(NB):
        with m.If(i < nf):
            m.d.comb += Assert(fb[i] < E)
            with m.If(i >= disc):
                with m.If(i == disc):
                    m.d.comb += Assert(fb[i] == chk_slot)
                if i + 1 < NB:
                    with m.If(i + 1 < nf):
                        m.d.comb += Assert(fb[i + 1] == nxt(fb[i]))
                with m.If(i + 1 == nf):
                    m.d.comb += Assert(s["ar_slot"] == nxt(fb[i]))
    # a beat held back waits for the o_cqe register: it matched, it is the next CQE
    with m.If(h["r_wait"]):
        m.d.comb += [Assert(run), Assert(disc == 0), Assert(live != 0), Assert(h["obuf_v"]),
                     Assert(h["prev_p"] == s["chk_phase"]), Assert(h["prev_cid"] == h["taken"]),
                     Assert(~h["prev_resp"][1]), Assert(h["pt"] != 0)]
    # the doorbell pipeline: request slot, write engine, the SSD's last value; in order
    dbq_v, dbq_val, w_val = s["dbq_v"], s["dbq_val"], s["w_val"]
    writing = db_state == 1
    last = Mux(dbq_v, dbq_val, Mux(writing, w_val, h["db_slot"]))
    tc = h["tc"]
    a += [Assert(h["aw_seen"] == (writing & s["aw_done"])),
          Assert(h["w_seen"] == (writing & s["w_done"])),
          Assert(h["b_due"] == (db_state == 2)), Assert(~(writing & s["aw_done"] & s["w_done"])),
          Assert(pos(last) <= tc), Assert(s["moved"] == (pos(last) != tc))]
    with m.If(h["w_seen"]):
        m.d.comb += Assert(h["w_val"] == w_val)
    with m.If(writing):
        m.d.comb += [Assert(w_val < E), Assert(pos(w_val) != 0), Assert(pos(w_val) <= tc),
                     Assert(s["w_addr"] == DB_ADDR >> 2), Assert(s["wq"] == 0)]
    with m.If(dbq_v):
        m.d.comb += [Assert(dbq_val < E), Assert(pos(dbq_val) != 0),
                     Assert(s["dbq_addr"] == DB_ADDR >> 2), Assert(s["dbq_q"] == 0)]
        with m.If(writing):
            m.d.comb += Assert(pos(dbq_val) > pos(w_val))
    m.d.comb += a


@pytest.mark.parametrize("task", ["prove", "cover"])
def test_cq_heads_never_pass_the_phase(tmp_path, task):
    m, ports = _harness(CqHandler(PARAMS), invariants=task == "prove")
    rc, log = _sby(tmp_path, "cq_phase", rtlil.convert(m, ports=ports), task,
                   depth=DEPTH[task])
    assert rc == 0 and "DONE (PASS" in log, log[-3000:]
    if task == "prove":
        assert "returned pass for induction" in log, log[-3000:]


@pytest.mark.parametrize("white_box", [True, False])
def test_the_proof_catches_a_phase_that_flips_before_the_wrap(tmp_path, white_box):
    """Flipping the expected phase one entry early makes the handler take the zeroed (or
    stale) entry at the ring end as new: a bounded check finds the counterexample, with
    the handler's phase in view and from its ports alone (a CQE emitted that was not
    posted)."""
    m, ports = _harness(_EarlyFlip(PARAMS), invariants=False, white_box=white_box)
    rc, log = _sby(tmp_path, "cq_phase_broken", rtlil.convert(m, ports=ports), "bmc",
                   depth=DEPTH["bmc"])
    assert rc != 0 and "DONE (FAIL" in log, log[-3000:]
