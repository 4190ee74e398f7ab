"""The stage worker processes (rq workers that load their model once per process)."""
