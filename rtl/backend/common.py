"""The back end's shared layouts, enumerations and stream helpers."""

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import data, enum, fifo, stream

from ..formats import (
    PAGE_BYTES,
    NsCounters,
)
from ..stream_util import HeadFifo

PAGE = PAGE_BYTES
NPAGES_BITS = 14                # a command's data pages, (nbytes + PAGE - 1) >> 12


def max_command_pages(params):
    """Most pages one command takes: its data pages, and a PRP list page past two."""
    data_pages = -(-params.max_io_size // PAGE)
    return data_pages + (data_pages > 2)


def RdmaBeat(data_width):
    """A beat of RDMA READ or WRITE data with its descriptor's tag."""
    return data.StructLayout({"data": data_width, "keep": data_width // 8, "last": 1,
                              "tag": 16})


class _State(enum.Enum, shape=3):
    FREE = 0
    WAIT_RD = 1        # RDMA READ of the data in flight
    READY = 2          # waiting for submission
    SUBMITTED = 3      # SQE sent, waiting for the CQE
    RETIRING = 4       # handed to retirement
    WAIT_WR = 5        # RDMA WRITE of read data in flight
    TIMED_OUT = 6      # given up, response not yet sent
    ZOMBIE = 7         # given up and answered: waits for its late CQE


class _Kind(enum.Enum, shape=3):
    CQE = 0            # the SSD completed it
    WR_OK = 1          # the RDMA WRITE of read data completed
    WR_ERR = 2         # the RDMA WRITE failed
    RD_ERR = 3         # the RDMA READ of write data failed
    TIMEOUT = 4        # outstanding too long (or its queue failed)
    ZOMBIE = 5         # the late CQE of a command given up
    INTERNAL = 6       # no staging: Internal Error
    REFUSED = 7        # answered by submission with ``status``: every queue of the namespace
                       # failed (Namespace Not Ready), a DSM range past nsze (LBA Out of Range)


def _StagingRef(page_bits):
    """A context's staging: subsystem and how many pages it holds (page table entries
    0 .. pages - 1)."""
    return data.StructLayout({"ss": 8, "pages": page_bits + 1})


def _InternalWrite(data_width, cbits, beat_w):
    """A staging write before its offset is known: beat ``n`` of context ``ctx``'s data
    (its page from the page table), or, when ``direct``, at byte ``offset``."""
    return data.StructLayout({"data": data_width, "keep": data_width // 8, "ctx": cbits,
                              "n": beat_w, "direct": 1, "offset": 32})


class _CountRecord(data.Struct):
    """The namespace-counter increments of one response."""
    index: 16
    first: 4           # the command's kind (or ``errors``), +1
    blocks_en: 1
    blocks_field: 4    # read_blocks / write_blocks, + ``blocks``
    blocks: 17
    third_en: 1
    third: 4           # backend_errors or icd_writes, +1


class _Finish(data.Struct):
    kind: _Kind
    ctx: 10
    status: 15         # SSD status field without the phase tag
    dw0: 32
    failed: 1          # TIMEOUT because the queue failed: free at once, no zombie
    late: 1            # TIMEOUT whose late CQE has already come: free at once


class _DsmCheck(data.Struct):
    """What the DSM range check needs of a context's command."""
    on: 1              # a Dataset Management command
    nr: 8              # ranges - 1
    nsze: 64           # namespace size in blocks


_COUNTER = {name: i for i, (name, _) in enumerate(data.Layout.cast(NsCounters))}


def _engine_status(entry):
    """The status field without P ({DNR, M, CRD, SCT, SC}) of a ``NvmeStatus`` entry."""
    sct, sc, dnr = entry
    return sc.value | (sct.value << 8) | (dnr << 14)


def _merge(m, name, sources, sink, early=None):
    """Fixed-priority merge of streams into ``sink`` (earlier sources first).

    A source offered on ``sink`` and not taken stays chosen (a register) until taken,
    even if an earlier source becomes valid meanwhile: ``sink`` keeps its payload while
    it waits (the stream rules).

    Returns one flag per source: that source would be taken in this cycle if offered
    (from ``sink.ready``, the lock registers and the earlier sources' ``valid``, not
    from its own), so that a producer can decide before offering.

    ``early``, when given (a signal of the payload's shape), is driven with
    ``sink.payload`` whenever ``sink.valid`` is high, chosen without the last
    source's ``valid`` (the last source is the default): a consumer that needs only
    the payload when it is valid reads it without the last producer's decision."""
    locked = Signal(name=f"{name}_locked")
    lock = Signal(range(len(sources)), name=f"{name}_lock")
    choice = Signal.like(lock, name=f"{name}_choice")
    with m.If(locked):
        m.d.comb += choice.eq(lock)
    with m.Else():
        for i in reversed(range(len(sources))):
            with m.If(sources[i].valid):
                m.d.comb += choice.eq(i)
    with m.Switch(choice):
        for i, src in enumerate(sources):
            with m.Case(i):
                m.d.comb += [sink.valid.eq(src.valid), sink.payload.eq(src.payload),
                             src.ready.eq(sink.ready)]
    m.d.sync += [locked.eq(sink.valid & ~sink.ready), lock.eq(choice)]
    if early is not None:
        pick = Signal.like(lock, name=f"{name}_early")
        m.d.comb += pick.eq(Mux(locked, lock, len(sources) - 1))
        with m.If(~locked):
            for i in reversed(range(len(sources) - 1)):
                with m.If(sources[i].valid):
                    m.d.comb += pick.eq(i)
        with m.Switch(pick):
            for i, src in enumerate(sources):
                with m.Case(i):
                    m.d.comb += early.eq(src.payload)
    rooms = []
    for i in range(len(sources)):
        room = Signal(name=f"{name}_room{i}")
        earlier = [src.valid for src in sources[:i]]
        free = ~(Cat(*earlier).any()) if earlier else 1
        m.d.comb += room.eq(sink.ready & Mux(locked, lock == i, free))
        rooms.append(room)
    return rooms


def _merge_registered(m, name, sources, sink):
    """Fixed-priority merge of streams into a register that offers ``sink`` (earlier
    sources first): ``sink.valid`` and ``sink.payload`` are flip-flops, so that a
    consumer that reads a memory at ``sink.payload`` starts from a register.

    The register takes when it is empty or taken (``sink.ready``); it then takes the
    earliest valid source. A record offered by a source in cycle t is offered on
    ``sink`` from t+1: fall-through source FIFOs (``_fifo_stream(...,
    fall_through=True)``) with this merge have the latency of buffered FIFOs with
    :func:`_merge`."""
    take = Signal(name=f"{name}_take")
    m.d.comb += take.eq(~sink.valid | sink.ready)
    with m.If(take):
        m.d.sync += sink.valid.eq(Cat(*(src.valid for src in sources)).any())
        for i in reversed(range(len(sources))):
            with m.If(sources[i].valid):
                m.d.sync += sink.payload.eq(sources[i].payload)
    for i, src in enumerate(sources):
        earlier = [s.valid for s in sources[:i]]
        m.d.comb += src.ready.eq(take & (~Cat(*earlier).any() if earlier else 1))


def _fifo_stream(m, name, layout, depth, *, fall_through=False):
    """A FIFO with stream views: returns (write side, read side) stream interfaces.

    Registered output (an entry is readable two cycles after its write) unless
    ``fall_through``: then readable the cycle after, from a head register
    (:class:`~rtl.stream_util.HeadFifo`: the timing of ``SyncFIFO``, without its
    LUT-memory read and level compare in front of the reader)."""
    width = layout if isinstance(layout, int) else data.Layout.cast(layout).size
    if fall_through:
        f = HeadFifo(width, depth)
    else:
        f = fifo.SyncFIFOBuffered(width=width, depth=depth)
    m.submodules[name] = f
    w = stream.Signature(layout).flip().create()
    r = stream.Signature(layout).create()
    m.d.comb += [f.w_data.eq(w.payload), f.w_en.eq(w.valid), w.ready.eq(f.w_rdy),
                 r.payload.eq(f.r_data), r.valid.eq(f.r_rdy), f.r_en.eq(r.ready)]
    return w, r


class Wires:
    """What the back end's units share while ``Backend.elaborate`` builds them: each unit
    takes the signals, memories and helpers it uses from the units before it
    (:meth:`take`) and gives those that units after it use (:meth:`give`). The lists
    are each unit's coupling to the others, the interfaces the timing-closure rebuild
    (issue 14, docs/timing.md) turns into registered ports."""

    def take(self, names):
        """The values of the space-separated ``names``, in order."""
        return tuple(getattr(self, name) for name in names.split())

    def give(self, **values):
        for name, value in values.items():
            setattr(self, name, value)
