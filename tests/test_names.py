"""Stream and person names: what may become a directory, a Redis key, a stored name."""

import pytest

from pipeline.names import PERSON_MAX, STREAM_MAX, BadName, check_person, check_stream


@pytest.mark.parametrize("name", ["cam1", "door_2", "lobby.east-1", "_x", "20261130T091334-ab12",
                                  "a" * STREAM_MAX])  # fmt: skip
def test_good_stream_names(name):
    assert check_stream(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "../x", "x/..", "a..b",
                                  ".hidden", "-x", "a b", "a:b", "é", "a\nb",
                                  "a" * (STREAM_MAX + 1)])  # fmt: skip
def test_bad_stream_names(name):
    with pytest.raises(BadName, match="bad stream name"):
        check_stream(name)


@pytest.mark.parametrize("name", ["alice", "Alice Smith", "José Núñez", "O'Brien", "eileen-collins",
                                  "J. R. R. Tolkien", "x" * PERSON_MAX])  # fmt: skip
def test_good_person_names(name):
    assert check_person(name) == name


@pytest.mark.parametrize("name", ["", " ", " alice", "alice ", "..", "a/b", "a\\b", "a..b",
                                  "-alice", "a\tb", "x" * (PERSON_MAX + 1)])  # fmt: skip
def test_bad_person_names(name):
    with pytest.raises(BadName, match="bad person name"):
        check_person(name)


def test_unknown_names_are_reserved():
    for name in ("unknown", "unknown-3"):
        with pytest.raises(BadName, match="unrecognised people"):
            check_person(name)
    assert check_person("unknown-3", allow_unknown=True) == "unknown-3"
    with pytest.raises(BadName):
        check_person("unknown", allow_unknown=True)
