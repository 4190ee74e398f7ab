"""Writing evaluation results into the docs: a JSON file and a marked block in markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_results(
    json_path: Path, md_path: Path, report: dict[str, Any], table: str, title: str
) -> None:
    """Write ``report`` as JSON and put ``table`` between the results markers of
    ``md_path`` (the rest of the page is kept; a new page gets ``title``)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    if md_path.exists():
        text = md_path.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            md_path.write_text(f"{head}{START}\n{table}\n{END}{tail}")
            return
    md_path.write_text(f"# {title}\n\n{START}\n{table}\n{END}\n")
