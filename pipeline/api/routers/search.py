"""/api/search: upload a photo, get the events whose track encodings match it, nearest
first, whether or not that person is enrolled."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile

from pipeline.api.app import State, state
from pipeline.api.models import Error, Event, SearchHit, SearchResult
from pipeline.api.uploads import encode_uploads

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResult,
    responses={413: {"model": Error}},
)
def search(
    st: Annotated[State, Depends(state)],
    photo: Annotated[UploadFile, File(description="a photo showing exactly one face")],
    max_distance: Annotated[
        float | None,
        Query(gt=0, lt=2, description="largest encoding distance (default: recognition.threshold)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> SearchResult:
    """Events whose track (the quality-weighted mean of its encodings) lies within
    ``max_distance`` of the photo's face, nearest first."""
    jitters = st.config.recognition.num_jitters  # as the tracks' samples were encoded
    ((_, vector, face, _),) = encode_uploads(st, [photo], jitters)
    threshold = max_distance if max_distance is not None else st.config.recognition.threshold
    st.index.refresh()
    hits, seconds = st.index.nearest(vector, threshold, limit + 50)  # some may be gone
    rows = st.store.events_by_uid(uid for uid, _ in hits)
    st.store.with_positions(list(rows.values()))
    items = [
        SearchHit(distance=round(d, 4), event=Event.from_row(rows[uid]))
        for uid, d in hits
        if uid in rows
    ][:limit]
    return SearchResult(
        face=face.box,
        max_distance=threshold,
        searched_tracks=len(st.index),
        seconds=round(seconds, 6),
        items=items,
    )
