"""A worker's activity line: at most one per period, with counts that add up."""

from __future__ import annotations

import logging

from workers import base
from workers.base import Activity


def test_one_line_per_period_with_the_counts(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    act = Activity("detect-0", every_s=10)
    with caplog.at_level(logging.INFO, logger="workers.activity"):
        for i in range(30):  # 30 jobs over 15 s, every 3rd one failed, 20 ms each
            clock[0] += 0.5
            act.job(ok=i % 3 != 0, seconds=0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "workers.activity"]
    assert lines == ["detect-0: 20 jobs in 10.0 s (2.0/s), 7 failed, mean 20 ms; 20 since start"]
    assert act.jobs == 10 and act.total == 30  # the next period is under way


def test_shown_without_verbose_logging():
    # the CLI's root level is WARNING unless -v; the activity logger has its own level
    assert logging.getLogger("workers.activity").getEffectiveLevel() == logging.INFO
