"""The back end's context store unit (``Backend.elaborate`` builds the units in order)."""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import Out

from ..formats import (
    BackendCommand,
    Event,
    RdmaCommand,
    StagingWrite,
)
from ..stream_util import PipelinedMemory, RegisterSlice
from .common import (
    NPAGES_BITS,
    _CountRecord,
    _DsmCheck,
    _fifo_stream,
    _Finish,
    _InternalWrite,
    _merge,
    _merge_registered,
    _StagingRef,
    _State,
)


class _CtxField:
    """One field of every context in a LUT memory (instead of a register per context).

    One writer (:meth:`write`, called once, in the branch that writes; the value is
    stored at the clock edge, as a ``sync`` assignment would be) and one
    combinational read port per reader (:meth:`read`: data in the same cycle).
    """

    def __init__(self, m, name, shape, depth):
        self._m, self._name, self._written = m, name, False
        self.shape = shape
        self._mem = m.submodules[name] = memory.Memory(shape=shape, depth=depth, init=[])
        self._wp = self._mem.write_port()

    def read(self, addr):
        port = self._mem.read_port(domain="comb")
        self._m.d.comb += port.addr.eq(addr)
        return port.data

    def write(self, addr, value):
        """Write ``value`` at ``addr``: a value of the field's shape, or, for a field with
        a layout, a dict that gives every member by name (each value is cast to its
        member's shape, so the layout alone sets the bit positions)."""
        # only the enable follows the branch: the address and data are driven from a
        # module of their own, outside any condition, so that the decision to write
        # does not gate every data bit
        if self._written:
            raise ValueError(f"context field {self._name} already has its one writer")
        self._written = True
        wr = self._m.submodules[f"{self._name}_wr"] = Module()
        if isinstance(value, dict):
            members = set(data.Layout.cast(self.shape).members)
            if set(value) != members:
                raise ValueError(f"context field {self._name}: members {sorted(members)} "
                                 f"written as {sorted(value)}")
            fields = Signal(self.shape, name=f"{self._name}_wdata")
            wr.d.comb += [fields[name].eq(v) for name, v in value.items()]
            value = fields
        wr.d.comb += [self._wp.addr.eq(addr), self._wp.data.eq(value)]
        self._m.d.comb += self._wp.en.eq(1)


# the fields of the command that submission sends in the SQE (its copy, ``sub_mem``)
_SUBMIT_CMD = data.StructLayout({name: BackendCommand.as_shape()[name].shape for name in (
    "opcode", "backend_nsid", "cdw", "nbytes", "slot")})


def _PICK(p):
    """What submission's IDLE and PICK read of a context, from a LUT memory."""
    return data.StructLayout({
        "queues": p.backend_queues, "slot": max(1, (p.namespaces - 1).bit_length()),
        "npages": NPAGES_BITS,      # data pages: (nbytes + 4095) >> 12
        "fence_wr": 1})             # a Write or DSM: the SQE waits for its data writes


def build(m, top, u):
    """The context store: per-context state, the fields kept in LUT memories, the command
    memory and its read ports, the page table, the free-context FIFO, and the queues and
    merges between the units.

    ``m`` is the back end's module, ``top`` the ``Backend``, ``u`` the
    :class:`Wires` its units share."""
    (N, W, beat_shift, beat_w, cbits, gbits, p, pb_bits, pg_bits, pt_bits) = u.take(
        "N W beat_shift beat_w cbits gbits p pb_bits pg_bits pt_bits")
    # --- contexts ------------------------------------------------------------------------
    state = Array(Signal(_State, name=f"ctx_state{i}") for i in range(N))
    c_late = Array(Signal(name=f"ctx_late{i}") for i in range(N))
    # the other fields live in LUT memories, one combinational read port per reader
    gen = _CtxField(m, "ctx_gen", gbits, N)          # CID generation
    c_queue = _CtxField(m, "ctx_queue", 8, N)        # backend queue it was submitted to
    c_stg = _CtxField(m, "ctx_stg", _StagingRef(pg_bits), N)  # its staging pages
    c_beats = _CtxField(m, "ctx_beats", beat_w, N)   # data beats
    # what the RDMA READ beat check needs of the beat count, computed as it is written:
    # the beats after a packet's first (``left``), and whether there are any (``nz``)
    # and any after the first (``more``), so that no carry chain or compare follows
    # the LUT-memory read
    c_rdm = _CtxField(m, "ctx_rdm", data.StructLayout(
        {"left": beat_w, "nz": 1, "more": 1}), N)
    c_start = _CtxField(m, "ctx_start", 32, N)       # submission time
    c_dw0 = _CtxField(m, "ctx_dw0", 32, N)           # CQE DW0 kept during the RDMA WRITE
    c_dsm = _CtxField(m, "ctx_dsm", _DsmCheck, N)    # what the DSM range check needs
    # what submission's queue pick and PICK state need (its copy of the command comes
    # two cycles after its address): the allowed queues, the namespace slot, the data
    # pages, whether the SQE waits for the command's own data writes
    c_pick = _CtxField(m, "ctx_pick", _PICK(p), N)
    dsm_bad = Signal(N)             # a DSM range of the context lies past nsze
    # the timeout scanner's state write, applied from these registers the cycle after
    # its give-up (the scanner drives them; a CQE for that context in that cycle sees,
    # in completion, the state they write)
    scan_v, scan_ctx, scan_zombie = Signal(), Signal(cbits), Signal()
    # retirement's release, applied from these registers the cycle after it (the
    # reclaim unit drives them: the context's state, ZOMBIE when ``rel_keep``, else
    # FREE; a CQE for that context in that cycle sees, in completion, the state they
    # write, and the timeout scanner reads it)
    rel_v, rel_ctx, rel_keep = Signal(), Signal(cbits), Signal()
    # the status unit's state write (it drives them; the status and RDMA READ data units
    # see it pending) and retirement's WAIT_WR (it drives them; the status unit sees it)
    stw_v, stw_ctx = Signal(), Signal(cbits)
    wwr_v, wwr_ctx = Signal(), Signal(cbits)
    now = Signal(32)
    m.d.sync += now.eq(now + 1)

    # the command memory (retirement's copy): the command and a flag that admission
    # computes as it writes it (a Read with data: its data goes out through the mover),
    # so that retirement's decision starts from the read register, not from a compare
    m.submodules.ctx_mem = ctx_mem = memory.Memory(
        shape=data.StructLayout({"cmd": BackendCommand, "read_out": 1}), depth=N, init=[])
    cm_wr = ctx_mem.write_port()
    # submission's copy of what it sends in the SQE: a block RAM read through a register
    # (data two cycles after the address: submission gives the address in IDLE and
    # uses the data from SQE on). Only admission writes it, and only to a free context;
    # a read in the cycle of a write is of no context submission goes on with
    # (``no_rw_check``: Yosys adds no collision logic)
    m.submodules.sub_mem = sub_mem = PipelinedMemory(
        _SUBMIT_CMD, N, attrs={"ram_style": "block", "no_rw_check": 1})
    m.d.comb += [sub_mem.w_addr.eq(cm_wr.addr), sub_mem.w_en.eq(cm_wr.en)]
    m.d.comb += [getattr(sub_mem.w_data, name).eq(getattr(cm_wr.data.cmd, name))
                 for name in _SUBMIT_CMD.members]
    cm_sub = sub_mem.read[0]
    # the page table: page k of context c at entry c * 2**pt_bits + k; written by
    # admission, one copy per reader, each read through a synchronous port (a block RAM
    # on the FPGA: no LUT-RAM multiplexer after it, and its write data and address go to
    # one cell per copy instead of hundreds)
    pt_wr = wiring.Signature({"addr": Out(cbits + pt_bits), "data": Out(pg_bits),
                              "en": Out(1)}).create()
    tables = []

    def page_of(ctx, k, en=1):
        """The page of entry ``k`` of context ``ctx``, in the cycle after the one in which
        ``ctx`` and ``k`` are given with ``en``; held while ``en`` is low. A read in the
        cycle of an entry's write returns no defined value on the FPGA (``no_rw_check``:
        Yosys adds no collision logic, which compared the read address with the write's
        into a flip-flop, a register-to-register path of 9 levels). Only admission
        writes, and only entries of the context it is allocating; no unit uses a read of
        that context's entries until its ALLOC ends (COPY waits out the cycle of the
        last write, ``~pt_wr.en``): a colliding read is a look-ahead whose data is not
        used."""
        copy = memory.Memory(shape=pg_bits, depth=N << pt_bits, init=[],
                             attrs={"no_rw_check": 1})
        m.submodules[f"page_table{len(tables)}"] = copy
        tables.append(copy)
        wp, rp = copy.write_port(), copy.read_port()
        m.d.comb += [wp.addr.eq(pt_wr.addr), wp.data.eq(pt_wr.data), wp.en.eq(pt_wr.en),
                     rp.addr.eq(Cat(k[:pt_bits], ctx)), rp.en.eq(en)]
        return rp.data

    cm_ret = ctx_mem.read_port()

    # free contexts: a FIFO that the reset fills with every index
    m.submodules.free = free = fifo.SyncFIFOBuffered(width=cbits, depth=N)
    filled = Signal(cbits + 1)
    filling = Signal(init=1)        # filled != N, as a register (retirement's and
    m.d.sync += filling.eq((filled + filling) != N)     # admission's decisions use it)
    release_en, release_ctx = Signal(), Signal(cbits)
    to_zombie = Signal()            # retirement keeps a given-up context as a zombie
    release_now = Signal()          # retirement releases (or keeps as zombie) its context
    with m.If(filling):
        m.d.comb += [free.w_data.eq(filled), free.w_en.eq(1)]
        m.d.sync += filled.eq(filled + 1)
    with m.Else():
        m.d.comb += [free.w_data.eq(release_ctx), free.w_en.eq(release_en)]

    # queues between units
    # a context for submission and its namespace slot (submission's round-robin start is
    # read at the slot from the FIFO's head register, not through ``c_pick``)
    submit_layout = data.StructLayout({"ctx": cbits, "slot": _PICK(p)["slot"].shape})
    submit_w, submit_r = _fifo_stream(m, "submit_q", submit_layout, N, fall_through=True)
    # the finish records: fall-through FIFOs into a registered merge (retirement reads
    # the command memory at the merge register's context, not through its choice)
    fin_adm_w, fin_adm_r = _fifo_stream(m, "fin_adm", _Finish, 2, fall_through=True)
    fin_sts_w, fin_sts_r = _fifo_stream(m, "fin_sts", _Finish, 2, fall_through=True)
    fin_sub_w, fin_sub_r = _fifo_stream(m, "fin_sub", _Finish, 2, fall_through=True)
    fin_cqe_w, fin_cqe_r = _fifo_stream(m, "fin_cqe", _Finish, 4, fall_through=True)
    fin_scan_w, fin_scan_r = _fifo_stream(m, "fin_scan", _Finish, 2, fall_through=True)
    fin = stream.Signature(_Finish).create()
    # RDMA statuses first: each releases a context and its pages, and CQEs arriving in a
    # burst would otherwise hold them back (4 KiB Reads at 128 with a bursty SSD: 0.67 -> 1)
    _merge_registered(m, "fin", [fin_sts_r, fin_cqe_r, fin_scan_r, fin_sub_r, fin_adm_r], fin)
    cnt_w, cnt_r = _fifo_stream(m, "count_q", _CountRecord, 4)
    ev_q_w, ev_q_r = _fifo_stream(m, "ev_queue", Event, 4)
    ev_ret = stream.Signature(Event).create()
    _merge(m, "ev", [ev_q_r, ev_ret], top.o_event)

    rdma_adm = stream.Signature(RdmaCommand).create()
    rdma_ret = stream.Signature(RdmaCommand).create()
    _merge(m, "rdma", [rdma_ret, rdma_adm], top.o_rdma_cmd)
    iw_layout = _InternalWrite(W, cbits, beat_w)
    stg_adm = stream.Signature(iw_layout).create()
    stg_rdm = stream.Signature(iw_layout).create()
    stg_prp = stream.Signature(iw_layout).create()
    stg_any = stream.Signature(iw_layout).create()
    # a PRP list entry first
    # (``stg_early``: the merged beat chosen without admission's ``valid``, for the page
    # table's read address and stg_in's data below: it is the beat whenever one is taken)
    stg_early = Signal(iw_layout)
    _, stg_rdm_room, stg_adm_room = _merge(m, "stg_wr", [stg_prp, stg_rdm, stg_adm], stg_any,
                                           early=stg_early)
    # two register stages to o_stg_wr: the merged beat (stg_in), then the beat with its
    # offset, its page read from the page table by stg_in's registers (stg_out); each a
    # slice, so that o_stg_wr and the sources' ready come from flip-flops
    m.submodules.stg_in = stg_in = RegisterSlice(iw_layout)
    m.submodules.stg_out = stg_out = RegisterSlice(StagingWrite(W))
    iw = stg_in.o_data
    # the page is read as stg_in loads its output register (from its spare entry or its
    # input), so that it is there with the beat. The input's context and index come from
    # the merge's early choice, the same beat whenever one is offered: admission's COPY
    # decision (its state, the in-capsule data's ``valid``) does not reach the address
    iw_next = Signal(iw_layout)
    m.d.comb += iw_next.eq(Mux(stg_in.spare_valid, stg_in.spare, stg_early))
    iw_page = page_of(iw_next.ctx, iw_next.n >> pb_bits,
                      en=~stg_in.o_valid | stg_in.o_ready)
    m.d.comb += [
        stg_in.i_valid.eq(stg_any.valid), stg_any.ready.eq(stg_in.i_ready),
        stg_in.i_data.eq(stg_early),
        stg_out.i_valid.eq(stg_in.o_valid), stg_in.o_ready.eq(stg_out.i_ready),
        stg_out.i_data.data.eq(iw.data), stg_out.i_data.keep.eq(iw.keep),
        stg_out.i_data.offset.eq(
            Mux(iw.direct, iw.offset, Cat(C(0, beat_shift), iw.n[:pb_bits], iw_page))),
        top.o_stg_wr.valid.eq(stg_out.o_valid), stg_out.o_ready.eq(top.o_stg_wr.ready),
        top.o_stg_wr.payload.eq(stg_out.o_data),
    ]
    # staging write beats issued, counted as they enter stg_in (the order in which they
    # leave), and beats written: those the external memory has acknowledged
    # (``stg_done``), or on chip those that left o_stg_wr (the staging memory stores a
    # beat from a register the cycle after it takes it, and every read issued from that
    # cycle on sees it). A fence compares the two, so that nothing reads or reuses a
    # page while a beat for it is still in the two stages.
    external = not p.onchip_staging
    wr_issued, wr_next = Signal(16), Signal(16)
    m.d.comb += wr_next.eq(wr_issued + (stg_any.valid & stg_any.ready))
    m.d.sync += wr_issued.eq(wr_next)
    if external:
        stg_done = top.stg_done
    else:
        stg_done = Signal(16)
        m.d.sync += stg_done.eq(stg_done + (top.o_stg_wr.valid & top.o_stg_wr.ready))

    def written(fence):
        """Every staging write up to ``fence`` is written."""
        return ~(stg_done - fence)[15]
    submit_adm = stream.Signature(submit_layout).create()
    submit_sts = stream.Signature(submit_layout).create()
    # RDMA statuses first: the status unit takes a status only when it has room on both
    # of its outputs, known from registers (its ``ready`` then does not depend on the
    # status's context)
    sts_sub_room = _merge(m, "submit", [submit_sts, submit_adm], submit_w)[0]
    u.give(c_beats=c_beats, c_dsm=c_dsm, c_pick=c_pick, c_dw0=c_dw0, c_late=c_late, c_queue=c_queue,
           c_rdm=c_rdm,
           c_start=c_start, c_stg=c_stg, cm_ret=cm_ret, cm_sub=cm_sub, cm_wr=cm_wr, cnt_r=cnt_r,
           cnt_w=cnt_w, dsm_bad=dsm_bad, ev_q_w=ev_q_w, ev_ret=ev_ret, filling=filling, fin=fin,
           fin_adm_w=fin_adm_w, fin_cqe_w=fin_cqe_w, fin_scan_w=fin_scan_w, fin_sts_w=fin_sts_w,
           fin_sub_w=fin_sub_w, free=free, gen=gen, now=now, page_of=page_of, pt_wr=pt_wr,
           rdma_adm=rdma_adm, rdma_ret=rdma_ret, release_ctx=release_ctx, release_en=release_en,
           release_now=release_now, rel_ctx=rel_ctx, rel_keep=rel_keep, rel_v=rel_v,
           stw_ctx=stw_ctx, stw_v=stw_v, wwr_ctx=wwr_ctx, wwr_v=wwr_v,
           scan_ctx=scan_ctx, scan_v=scan_v, scan_zombie=scan_zombie,
           state=state,
           stg_adm=stg_adm, stg_done=stg_done,
           stg_prp=stg_prp, stg_rdm=stg_rdm, stg_rdm_room=stg_rdm_room, stg_adm_room=stg_adm_room,
           submit_adm=submit_adm,
           submit_r=submit_r,
           submit_sts=submit_sts, sts_sub_room=sts_sub_room, to_zombie=to_zombie,
           wr_issued=wr_issued, wr_next=wr_next, written=written)
