def test_world_is_as_described(world):
    rows = world.store.find_events(newest_first=False)
    got = [(r["stream"], r["track_id"], r["person"] or r["unknown_id"]) for r in rows]
    assert got == [
        ("door", 1, "unknown-1"), ("door", 2, "unknown-2"), ("door", 3, "zoe"),
        ("lobby", 1, "unknown-1"), ("lobby", 2, "unknown-2"), ("lobby", 3, "unknown-3"),
    ]  # fmt: skip
    assert all(r["snapshot"] and r["n_frames"] == 3 and r["ended"] for r in rows)
