"""Multi-face trackers whose whole state is JSON (kept in Redis between jobs)."""

from pipeline.tracking.iou import IoUTracker, iou

__all__ = ["IoUTracker", "iou"]
