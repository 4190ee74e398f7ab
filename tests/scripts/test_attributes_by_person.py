"""The identity clustering of scripts/attributes_by_person.py (no data set needed)."""

from __future__ import annotations

import importlib.util

import numpy as np

from pipeline.datasets import REPO_ROOT


def _module():
    path = REPO_ROOT / "scripts" / "attributes_by_person.py"
    spec = importlib.util.spec_from_file_location("attributes_by_person", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_components_chain_faces_closer_than_the_threshold() -> None:
    mod = _module()
    x = np.array([[0.0, 0], [0.3, 0], [0.6, 0], [5, 5], [5.2, 5], [9, 9]])
    comp = mod.components(x, 0.35, block=2)  # blocks smaller than the data
    assert comp[0] == comp[1] == comp[2]  # a chain is one identity
    assert comp[3] == comp[4] != comp[0]
    assert len(set(comp.tolist())) == 3


def test_unseen_by_cluster_is_stricter_than_no_lookalike() -> None:
    mod = _module()
    train = np.array([[0.0, 0], [10, 10]])
    # held 0: 0.3 from a training face; held 1: 0.5 from it but 0.3 from held 0 (a chain);
    # held 2: alone
    held = np.array([[0.3, 0], [0.6, 0], [5, 5]])
    near, clus = mod.unseen_mask(held, train, 0.35)
    assert near.tolist() == [False, True, True]
    assert clus.tolist() == [False, False, True]
