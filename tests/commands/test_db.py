"""`facepipe db current` / `facepipe db upgrade` on the default SQLite store."""

from click.testing import CliRunner

from pipeline import migrations
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.store import make_engine


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_db_current_and_upgrade(home):
    engine = make_engine(load_config(None).store_url)
    assert "current: none" in run("db", "current")
    assert migrations.upgrade(engine, "0001") is None  # a store at the baseline
    out = run("db", "current")
    assert "current: 0001" in out and f"head:    {migrations.head()}" in out
    assert run("db", "upgrade").strip() == f"upgraded 0001 -> {migrations.head()}"
    assert migrations.current(engine) == migrations.head()
    assert run("db", "upgrade").strip() == f"already at {migrations.head()}"
