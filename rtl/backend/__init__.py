"""Back-end core: contexts, staging pages, RDMA movers, submission, completion, retirement.

Executes the served commands of the front end (``docs/engine.md`` sections
3-5) with the blocks of ``docs/backend.md`` (staging memory, SQ writer, CQ
handler) around it. Work moves between small units as context numbers:

* admission takes a context and its staging pages, then starts the data in
  (an RDMA READ descriptor, or the in-capsule data copied into staging) or
  queues the context for submission;
* the RDMA read mover writes returned READ data into the context's pages;
* the status dispatcher moves contexts on when the transport completes a
  descriptor;
* submission picks a backend queue with a free SQ slot (round robin over the
  namespace's queues), writes the PRP list into staging, sends the SQE;
* completion retires contexts by CID (context index and generation), and
  drops the late CQE of a command given up;
* the timeout scanner looks at one context a cycle (a read stage, then a verdict stage);
* retirement hands a Read's data to the data-out mover, which issues the
  RDMA WRITE descriptor and the staging read and streams the packet (the
  next packet's descriptor and read go out while one streams); after the
  WRITE's status, or at once for other commands, retirement sends the
  response, the counters and the events, and frees the context and its pages.

Staging: each subsystem's window is 4 KiB pages (``rtl/pages.py``); a command takes
``ceil(bytes / 4096)`` pages, one more for its PRP list when it spans more than two,
not necessarily contiguous, and keeps their numbers in a per-context page table.

The package holds one file per unit: ``core.py`` (``Backend``: its ports, and the units
built in order), ``context_store.py``, ``admission.py``, ``rdma_read.py``,
``dsm_check.py``, ``status.py``, ``submission.py``, ``queue_failures.py``,
``completion.py``, ``timeout_scan.py``, ``retirement.py``, ``data_out.py``,
``streamer.py``, ``reclaim.py``, ``fence.py``, ``counters.py``, ``resources.py``;
``queues.py`` (the backend-queue store, ``_Queues``) and ``common.py`` (layouts and
stream helpers). Each unit is still a function that adds its logic to the back end's one
module; what it takes from the units before it and gives to those after it
(:class:`~rtl.backend.common.Wires`) is its coupling, which the timing-closure work
(issue 14, ``docs/timing.md``) turns into registered ports, unit by unit.
"""

from .common import PAGE, RdmaBeat, _merge, max_command_pages  # noqa: F401
from .core import Backend
from .queues import _Queues  # noqa: F401 (the formal checks use them)

__all__ = ["Backend", "RdmaBeat", "PAGE", "max_command_pages"]
