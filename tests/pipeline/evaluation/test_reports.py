import json

from pipeline.evaluation.reports import END, START, write_results


def test_results_block_replaced_and_rest_of_page_kept(tmp_path):
    md, js = tmp_path / "page.md", tmp_path / "r.json"
    write_results(js, md, {"a": 1}, "| t1 |", "Title")
    assert md.read_text() == f"# Title\n\n{START}\n| t1 |\n{END}\n"
    md.write_text(md.read_text().replace("# Title", "# Title\n\nprose") + "\nmore prose\n")
    write_results(js, md, {"a": 2}, "| t2 |", "Title")
    text = md.read_text()
    assert "| t2 |" in text and "| t1 |" not in text
    assert "prose" in text and "more prose" in text
    assert json.loads(js.read_text()) == {"a": 2}
