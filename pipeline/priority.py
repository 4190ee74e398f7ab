"""CPU priority of a worker process (``workers.nice``).

On a machine whose cores the pipeline fills, the stages on the path from a frame to its
event (capture, track, sink) should not wait behind the heavy model stages: a live
camera's detection rate adapts to what the detect stage gets done (``capture.
live_max_in_flight``), and recognition and attributes complete an event later, but a
frame that waits for CPU behind them is late for everyone. So a worker lowers its own
priority by its stage's ``workers.nice`` value when it starts.

Linux with ``sched_autogroup`` (the default of most desktop and server kernels) shares
CPU time between *sessions* first and only then, by nice value, between the processes
of one session; ``facepipe run`` starts each worker in its own session, so a plain
``nice`` would change nothing there. A worker that leads its own session therefore also
sets its session's autogroup nice value (``/proc/self/autogroup``), which is then its
own. A worker started from a shell (not a session leader) only lowers its own nice
value, never its shell's whole session. Raising priority again needs privileges, so
only lowering is ever asked for (values 0-19).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int, autogroup: Path = AUTOGROUP) -> list[str]:
    """Lower this process's CPU priority to ``nice`` (0-19, never raised); what was set."""
    if not 0 <= nice <= 19:
        raise ValueError(f"nice must be 0-19, not {nice}")
    done: list[str] = []
    if nice == 0:
        return done
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        done.append(f"nice {nice}")
    if os.getsid(0) == os.getpid() and autogroup.exists():
        try:
            autogroup.write_text(f"{nice}\n")
            done.append(f"autogroup nice {nice}")
        except OSError as exc:  # an older kernel, a read-only /proc: nice alone
            log.debug("cannot set the autogroup's nice value: %s", exc)
    return done
