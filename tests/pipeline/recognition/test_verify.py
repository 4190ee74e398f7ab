"""Verification: pairs parsing, threshold selection, TAR@FAR, calibrated thresholds per
encoder setting (plain / flip-averaged), the encoder path and its cache, and the CLI.

No dataset needed: the maths runs on synthetic distances, the real-encoder checks on
scikit-image's astronaut() photo and an up-scaled face from skimage.data.lfw_subset().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.commands import Context
from pipeline.commands.verify import COMMANDS, verify
from pipeline.recognition import verify as V
from pipeline.recognition.thresholds import CALIBRATED, operating_points

# ----- pairs files ------------------------------------------------------------------


def test_parse_pairs_dataset_format_and_variants() -> None:
    lines = [
        "# a comment\n",
        "1\tA/A_0001.jpg\tA/A_0002.jpg\t1\n",
        "\n",
        "2\tB/B_0001.jpg\tC/C_0003.jpg\t0\r\n",
        "3\tD/D_0001.jpg\tD/D_0002.jpg\n",
        "x.png\ty.png\n",
    ]
    pairs = V.parse_pairs(lines)
    assert pairs == [
        V.Pair("A/A_0001.jpg", "A/A_0002.jpg", True, 1),
        V.Pair("B/B_0001.jpg", "C/C_0003.jpg", False, 2),
        V.Pair("D/D_0001.jpg", "D/D_0002.jpg", None, 3),
        V.Pair("x.png", "y.png", None, None),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("one\ta\tb\t1", "FOLD must be an integer"),
        ("1\ta\tb\tyes", "SAME must be 1 or 0"),
        ("1\ta\tb\t1\textra", "5 tab-separated"),
        ("1 a b 1", "1 tab-separated"),
        ("1\t\tb\t1", "empty image path"),
    ],
)
def test_parse_pairs_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(V.PairsFormatError) as exc:
        V.parse_pairs(["1\ta\tb\t1", line], source="p.tsv")
    assert "p.tsv:2" in str(exc.value)
    assert message in str(exc.value)


def test_load_pairs_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pairs file not found"):
        V.load_pairs(tmp_path / "nope.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n\n")
    with pytest.raises(V.PairsFormatError, match="no pairs"):
        V.load_pairs(empty)


# ----- threshold selection ------------------------------------------------------------


def test_best_threshold_separable_is_the_middle_of_the_gap() -> None:
    d = np.array([0.2, 0.3, 0.4, 0.7, 0.8, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    t = V.best_threshold(d, same)
    assert t == pytest.approx(0.55)
    assert V.accuracy(d, same, t) == 1.0


def test_best_threshold_known_optimum_with_overlap() -> None:
    # (0.55, 0.7) classifies 8 of 9 correctly; (0.3, 0.5) only 7; so 0.625
    d = np.array([0.1, 0.2, 0.3, 0.52, 0.55, 0.5, 0.7, 0.8, 0.9])
    same = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    t = V.best_threshold(d, same)
    assert t == pytest.approx(0.625)
    assert V.accuracy(d, same, t) == pytest.approx(8 / 9)


def test_best_threshold_matches_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(0)
    same = rng.random(400) < 0.5
    d = np.where(same, rng.normal(0.45, 0.08, 400), rng.normal(0.7, 0.08, 400))
    t = V.best_threshold(d, same)
    grid = np.concatenate([d, np.linspace(d.min() - 0.1, d.max() + 0.1, 2001)])
    brute = max(V.accuracy(d, same, g) for g in grid)
    assert V.accuracy(d, same, t) == pytest.approx(brute)


def test_kfold_threshold_is_chosen_on_the_other_folds_only() -> None:
    # folds 1 and 2: perfectly separated around 0.55; fold 3's genuine pairs sit at
    # 0.6 and 0.62, which a threshold fitted on fold 3 itself would accept.
    d = np.array([0.2, 0.4, 0.7, 0.9, 0.3, 0.35, 0.75, 0.8, 0.6, 0.62, 0.9])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    folds = np.array([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    res = {r.fold: r for r in V.kfold_accuracy(d, same, folds)}
    assert res[3].threshold == pytest.approx(V.best_threshold(d[:8], same[:8]))
    assert res[3].threshold < 0.6
    assert res[3].accuracy == pytest.approx(1 / 3)
    assert res[3].pairs == 3
    # fold 1 held out: fitted on folds 2+3, whose gap is (0.62, 0.75)
    assert 0.62 < res[1].threshold < 0.75
    assert res[1].accuracy == 1.0


def test_kfold_needs_two_folds_and_matching_lengths() -> None:
    with pytest.raises(ValueError, match="two folds"):
        V.kfold_accuracy(np.array([0.1, 0.9]), np.array([True, False]), np.array([1, 1]))
    with pytest.raises(ValueError, match="2 distances but 3 labels"):
        V.accuracy(np.array([0.1, 0.9]), np.array([True, False, True]), 0.5)
    with pytest.raises(ValueError, match="no pairs"):
        V.best_threshold(np.array([]), np.array([], dtype=bool))


# ----- TAR at FAR and ROC -------------------------------------------------------------


def test_threshold_at_far_accepts_at_most_the_allowed_impostors() -> None:
    imp = np.arange(1, 1001) / 1000.0  # 0.001 .. 1.0
    rng = np.random.default_rng(1)
    rng.shuffle(imp)
    for far, allowed in [(0.0, 0), (0.001, 1), (0.01, 10), (0.0105, 10), (0.1, 100)]:
        t = V.threshold_at_far(imp, far)
        assert int((imp <= t).sum()) == allowed
        # and it is the largest such threshold: the next impostor would be accepted
        assert np.sort(imp)[allowed] > t
    with pytest.raises(ValueError):
        V.threshold_at_far(imp, 1.0)
    with pytest.raises(ValueError):
        V.threshold_at_far(np.array([]), 0.01)


def test_kfold_tar_at_far_uses_other_folds_impostors() -> None:
    # fold 1 impostors start at 0.5, fold 2's at 0.8; genuine pairs spread 0.3-0.75
    gen1 = np.array([0.3, 0.45, 0.55, 0.75])
    gen2 = np.array([0.35, 0.6, 0.7, 0.78])
    imp1 = np.linspace(0.5, 1.0, 10)
    imp2 = np.linspace(0.8, 1.2, 10)
    d = np.concatenate([gen1, imp1, gen2, imp2])
    same = np.concatenate([np.ones(4), np.zeros(10), np.ones(4), np.zeros(10)]).astype(bool)
    folds = np.array([1] * 14 + [2] * 14)
    res = {r.fold: r for r in V.kfold_tar_at_far(d, same, folds, far=0.0)}
    # fold 1 scored with t just below 0.8 (fold 2's smallest impostor): all 4 genuine
    # accepted, and fold 1 impostors 0.5, 0.5556, 0.6111, 0.6667, 0.7222, 0.7778 too
    assert res[1].threshold == pytest.approx(0.8)
    assert res[1].threshold < 0.8
    assert res[1].tar == 1.0
    assert res[1].far == pytest.approx(0.6)
    # fold 2 scored with t just below 0.5: only 0.35 accepted
    assert res[2].tar == pytest.approx(0.25)
    assert res[2].far == 0.0


def test_roc_points_are_monotone_and_complete() -> None:
    d = np.array([0.2, 0.3, 0.3, 0.6, 0.5, 0.8])
    same = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    roc = V.roc_points(d, same)
    thresholds = [p[0] for p in roc]
    assert thresholds == sorted(set(d.tolist()))
    assert all(a[1] <= b[1] and a[2] <= b[2] for a, b in zip(roc, roc[1:], strict=False))
    assert roc[-1][1:] == (1.0, 1.0)
    t, far, tar = roc[1]  # threshold 0.3: accepts genuine 0.2, 0.3 and impostor 0.3
    assert (t, far, tar) == (pytest.approx(0.3), pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert V.tar_far(d, same, 0.3) == (pytest.approx(2 / 3), pytest.approx(1 / 3))


def test_decision_rule_is_inclusive() -> None:
    assert V.is_same(0.5, 0.5)
    assert not V.is_same(0.5000001, 0.5)
    assert 0.3 < V.DEFAULT_THRESHOLD < 0.8


def test_calibrated_threshold_per_jitter_count() -> None:
    assert V.calibrated_threshold(1) == V.DEFAULT_THRESHOLD
    assert V.calibrated_threshold(1, V.DEFAULT_FLIP) == V.DEFAULT_THRESHOLD
    assert V.calibrated_threshold(5, flip=False) == CALIBRATED[(5, False)].accuracy
    # more jitters shrink distances: never a looser threshold than with fewer
    assert V.calibrated_threshold(5, flip=False) <= V.calibrated_threshold(1, flip=False)
    assert V.calibrated_threshold(3, flip=False) == V.calibrated_threshold(5, flip=False)
    assert V.calibrated_threshold(2, flip=False) == V.calibrated_threshold(1, flip=False)
    assert V.calibrated_threshold(50, flip=False) == V.calibrated_threshold(5, flip=False)
    with pytest.raises(ValueError):
        V.calibrated_threshold(0)
    with pytest.raises(ValueError):
        V.calibrated_threshold(0, flip=True)


def test_calibrated_threshold_with_flip() -> None:
    # flip-averaged encodings have their own entries; they are closer together, so for the
    # same jitter count their threshold is never looser than the plain one
    flip_values = {p.accuracy for (_, flip), p in CALIBRATED.items() if flip}
    for j in (1, 2, 5, 10):
        flip_t = V.calibrated_threshold(j, flip=True)
        assert flip_t in flip_values
        assert flip_t <= V.calibrated_threshold(j, flip=False)
    assert V.calibrated_threshold(1, flip=True) == CALIBRATED[(1, True)].accuracy
    assert V.calibrated_threshold(1, flip=True) != V.calibrated_threshold(1, flip=False)
    # the default of `facepipe verify` is the entry of its default encoder
    assert V.DEFAULT_THRESHOLD == CALIBRATED[(1, V.DEFAULT_FLIP)].accuracy


def test_pipeline_thresholds_are_the_far_1pct_points() -> None:
    # the pipeline takes the stricter point where about 1 % of impostors are accepted
    # (one face against every enrolled person), verify the accuracy optimum
    for points in CALIBRATED.values():
        assert 0.5 < points.far_1pct < 0.7 and 0.5 < points.accuracy < 0.7
    assert operating_points(1, False).far_1pct < operating_points(1, False).accuracy
    assert operating_points(1, True).far_1pct < operating_points(1, False).far_1pct
    assert operating_points(3, True) == CALIBRATED[(5, True)]


# ----- images, the real encoder and the cache --------------------------------------------


def _save(path: Path, rgb: np.ndarray, mode: str = "RGB") -> Path:
    img = Image.fromarray(np.ascontiguousarray(rgb))
    img.convert(mode).save(path)
    return path


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """astronaut.png, a mirrored + cropped + resized copy, a grayscale copy, another face,
    a picture with no face, and a corrupt file."""
    from skimage import data
    from skimage.transform import resize

    d = tmp_path_factory.mktemp("faces")
    astro = data.astronaut()
    _save(d / "astronaut.png", astro)
    crop = astro[10:420, 90:470][:, ::-1]  # mirrored and cropped off-centre
    small = (resize(crop, (300, 278), anti_aliasing=True) * 255).astype(np.uint8)
    _save(d / "astronaut_flip_crop.png", small)
    _save(d / "astronaut_gray.png", astro, mode="L")
    other = (resize(data.lfw_subset()[0], (250, 250)) * 255).astype(np.uint8)
    _save(d / "other.png", other, mode="L")
    _save(d / "noface.png", np.full((120, 160, 3), 128, dtype=np.uint8))
    (d / "broken.png").write_bytes(b"not an image at all")
    return d


@pytest.fixture(scope="module")
def pair_encoder() -> V.PairEncoder:
    return V.PairEncoder()


def test_load_rgb_gray_to_three_channels_and_errors(faces_dir: Path) -> None:
    rgb = V.load_rgb(faces_dir / "astronaut_gray.png")
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    with pytest.raises(V.ImageError, match="not found"):
        V.load_rgb(faces_dir / "missing.png")
    with pytest.raises(V.ImageError, match="cannot read image"):
        V.load_rgb(faces_dir / "broken.png")


@pytest.mark.slow
def test_real_encoder_same_person_and_different_person(
    faces_dir: Path, pair_encoder: V.PairEncoder
) -> None:
    a = pair_encoder.encode_file(faces_dir / "astronaut.png")
    b = pair_encoder.encode_file(faces_dir / "astronaut_flip_crop.png")
    g = pair_encoder.encode_file(faces_dir / "astronaut_gray.png")
    o = pair_encoder.encode_file(faces_dir / "other.png")
    assert a.encoding.shape == (128,) and not a.fallback and not b.fallback
    # the astronaut's face, not the false detection lower in the picture
    assert a.box[1] < 150
    d_same = V.pair_distance(a.encoding, b.encoding)
    assert 0 < d_same and V.is_same(d_same)
    assert V.is_same(V.pair_distance(a.encoding, g.encoding))
    assert not V.is_same(V.pair_distance(a.encoding, o.encoding))


def test_fallback_box_when_hog_finds_nothing(faces_dir: Path, pair_encoder: V.PairEncoder) -> None:
    r = pair_encoder.encode_file(faces_dir / "noface.png")
    assert r.fallback and r.box == V.fallback_box(160, 120)
    assert str(faces_dir / "noface.png") in pair_encoder.fallbacks
    x, y, w, h = V.fallback_box(250, 250)
    assert 0 < x < 125 < x + w <= 250 and 0 < y < 125 < y + h <= 250


@pytest.mark.slow
def test_cache_round_trip_without_pickle(faces_dir: Path, tmp_path: Path) -> None:
    cache = V.EncodingCache(tmp_path / "cache")
    first = V.PairEncoder(cache=cache)
    a = first.encode_file(faces_dir / "astronaut.png", key="astronaut.png")
    first.encode_file(faces_dir / "noface.png", key="noface.png")
    cache.flush()
    assert first.encoded == 2
    assert (tmp_path / "cache" / "encodings.npy").is_file()
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["detections"]["noface.png"] == {"size": [160, 120], "faces": []}
    assert np.load(tmp_path / "cache" / "encodings.npy", allow_pickle=False).shape == (2, 128)

    second = V.PairEncoder(cache=V.EncodingCache(tmp_path / "cache"))
    again = second.encode_file(faces_dir / "astronaut.png", key="astronaut.png")
    fb = second.encode_file(faces_dir / "noface.png", key="noface.png")
    assert second.encoded == 0
    assert np.array_equal(again.encoding, a.encoding) and again.box == a.box
    assert fb.fallback and second.fallbacks == {"noface.png"}


@pytest.mark.slow
def test_pair_encoder_flip_and_the_cache_keeps_settings_apart(
    faces_dir: Path, tmp_path: Path
) -> None:
    from pipeline.recognition.encoder import DlibEncoder
    from pipeline.record import Face

    assert V.PairEncoder().flip is V.DEFAULT_FLIP
    cache_dir = tmp_path / "cache"
    plain = V.PairEncoder(flip=False, cache=V.EncodingCache(cache_dir), gray="replicate")
    p = plain.encode_file(faces_dir / "astronaut.png", key="astronaut.png")
    plain.cache.flush()  # type: ignore[union-attr]
    assert plain.flip is False and plain.encoded == 1

    # a flip encoder on the same cache does not take the plain encoding for its own
    flip = V.PairEncoder(flip=True, cache=V.EncodingCache(cache_dir), gray="replicate")
    f = flip.encode_file(faces_dir / "astronaut.png", key="astronaut.png")
    flip.cache.flush()  # type: ignore[union-attr]
    assert flip.flip is True and flip.encoded == 1
    assert f.box == p.box and not np.array_equal(f.encoding, p.encoding)
    assert V.pair_distance(f.encoding, p.encoding) < 0.3  # the same face
    expected = DlibEncoder(flip=True).encode(
        V.load_rgb(faces_dir / "astronaut.png"), [Face(box=f.box)]
    )[0]
    assert np.allclose(f.encoding, expected)
    rows = json.loads((cache_dir / "index.json").read_text())["rows"]
    assert sorted(rows) == sorted(
        [
            V.EncodingCache.key("astronaut.png", p.box),
            V.EncodingCache.key("astronaut.png", p.box, "flip"),
        ]
    )

    # both are reused from the cache afterwards, each under its own key
    again_plain = V.PairEncoder(flip=False, cache=V.EncodingCache(cache_dir), gray="replicate")
    again_flip = V.PairEncoder(flip=True, cache=V.EncodingCache(cache_dir), gray="replicate")
    ap = again_plain.encode_file(faces_dir / "astronaut.png", key="astronaut.png")
    af = again_flip.encode_file(faces_dir / "astronaut.png", key="astronaut.png")
    assert again_plain.encoded == again_flip.encoded == 0
    assert np.array_equal(ap.encoding, p.encoding) and np.array_equal(af.encoding, f.encoding)


# ----- gray images: tinted by default ---------------------------------------------------


def test_tint_gray_colours_gray_images_and_leaves_colour_alone() -> None:
    gray = np.tile(np.array([[0, 100, 204, 255]], dtype=np.uint8)[..., None], (3, 1, 3))
    assert V.is_gray(gray)
    t = V.tint_gray(gray)
    assert t.dtype == np.uint8 and t.shape == gray.shape
    # R brighter than the gray value, G and B darker (a face colour), clipped at 255
    assert list(t[0, 1]) == [125, 92, 77]
    assert list(t[0, 2]) == [255, 187, 158] and list(t[0, 3]) == [255, 234, 197]
    assert list(t[0, 0]) == [0, 0, 0]
    assert t[0, 1, 0] == round(100 * V.GRAY_TINT[0])
    colour = gray.copy()
    colour[0, 1] = (100, 101, 100)
    assert not V.is_gray(colour)
    assert V.tint_gray(colour) is colour
    assert V.DEFAULT_GRAY == "tint" and set(V.GRAY_MODES) == {"tint", "replicate"}


class _SeeingEncoder:
    """Stands in for DlibEncoder: records the image it is given, returns its channel means."""

    flip = True

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def encode(self, image: np.ndarray, faces: list) -> np.ndarray:
        self.seen.append(image.copy())
        return np.tile(image.reshape(-1, 3).mean(axis=0), 43)[None, :128] / 255.0


def test_pair_encoder_tints_only_gray_images_and_keys_the_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(40, 200, (60, 60), dtype=np.uint8)
    colour = rng.integers(40, 200, (60, 60, 3), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    Image.fromarray(colour, mode="RGB").save(tmp_path / "c.png")

    fake = _SeeingEncoder()
    enc = V.PairEncoder(encoder=fake, cache=V.EncodingCache(tmp_path / "cache"))
    assert enc.gray == "tint"  # the default
    g = enc.encode_file(tmp_path / "g.png", key="g.png")
    enc.encode_file(tmp_path / "c.png", key="c.png")
    tinted, seen_colour = fake.seen
    assert np.array_equal(tinted, V.tint_gray(np.repeat(gray[..., None], 3, axis=2)))
    assert np.array_equal(seen_colour, colour)  # colour images are not changed
    r, gg, b = g.encoding[:3]
    assert r > gg > b  # the encoder saw a face-coloured image, not a gray one
    enc.cache.flush()  # type: ignore[union-attr]
    rows = json.loads((tmp_path / "cache" / "index.json").read_text())["rows"]
    assert all(k.endswith("|flip-tint") for k in rows)

    # "replicate": the gray value as it is, cached under its own key
    fake2 = _SeeingEncoder()
    rep = V.PairEncoder(encoder=fake2, cache=V.EncodingCache(tmp_path / "cache"), gray="replicate")
    h = rep.encode_file(tmp_path / "g.png", key="g.png")
    assert rep.encoded == 1 and V.is_gray(fake2.seen[0])
    assert h.encoding[0] == pytest.approx(h.encoding[1])
    again = V.PairEncoder(encoder=_SeeingEncoder(), cache=V.EncodingCache(tmp_path / "cache"))
    assert np.array_equal(again.encode_file(tmp_path / "g.png", key="g.png").encoding, g.encoding)
    assert again.encoded == 0
    with pytest.raises(ValueError, match="gray"):
        V.PairEncoder(encoder=fake, gray="sepia")


@pytest.mark.slow
def test_tinted_lfw_pairs_with_the_default_rule() -> None:
    """Optional (skips without ../shared/datasets): the default `verify` encoder on a few
    LFW-a pairs of fold 1 with wide margins: gray images are tinted, decisions right."""
    from pipeline.datasets import datasets_root

    root = datasets_root()
    if root is None or not (root / "lfw-pairs-subset" / "pairs.tsv").is_file():
        pytest.skip("datasets absent")
    data = root / "lfw-pairs-subset"
    pairs = [p for p in V.load_pairs(data / "pairs.tsv") if p.fold == 1]
    chosen = [p for p in pairs if p.same][:3] + [p for p in pairs if not p.same][:3]
    enc = V.PairEncoder()
    assert enc.flip and enc.gray == "tint"
    for p in chosen:
        a = enc.encode_file(data / "images" / p.a)
        b = enc.encode_file(data / "images" / p.b)
        assert V.is_same(V.pair_distance(a.encoding, b.encoding)) == p.same, (p.a, p.b)


# ----- the `facepipe verify` command --------------------------------------------------


def _invoke(command, args):  # type: ignore[no-untyped-def]
    """Run a command as the CLI group would (with its Context, the config from the env)."""
    return CliRunner().invoke(command, args, obj=Context(None))


def _pairs_file(faces_dir: Path, tmp_path: Path) -> Path:
    p = tmp_path / "pairs.tsv"
    p.write_text(
        "1\tastronaut.png\tastronaut_flip_crop.png\t1\n"
        "1\tastronaut.png\tother.png\t0\n"
        "2\tastronaut.png\tmissing.png\t1\n"
        "2\tbroken.png\tastronaut_gray.png\t0\n"
    )
    return p


@pytest.mark.slow
def test_verify_cli_json(faces_dir: Path, tmp_path: Path) -> None:
    assert verify in COMMANDS
    pairs = _pairs_file(faces_dir, tmp_path)
    res = _invoke(verify, ["--pairs", str(pairs), "--root", str(faces_dir), "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [(r["a"], r["b"]) for r in rows] == [
        ("astronaut.png", "astronaut_flip_crop.png"),
        ("astronaut.png", "other.png"),
        ("astronaut.png", "missing.png"),
        ("broken.png", "astronaut_gray.png"),
    ]
    assert rows[0]["same"] is True and 0 < rows[0]["distance"] <= V.DEFAULT_THRESHOLD
    assert rows[1]["same"] is False and rows[1]["distance"] > V.DEFAULT_THRESHOLD
    assert set(rows[2]) == {"a", "b", "error"} and "missing.png" in rows[2]["error"]
    assert set(rows[3]) == {"a", "b", "error"} and "broken.png" in rows[3]["error"]

    # with a cache: same output, encodings stored per jitter setting, reused
    cache = tmp_path / "cache"
    args = ["--pairs", str(pairs), "--root", str(faces_dir), "--json", "--cache", str(cache)]
    first = _invoke(verify, args)
    again = _invoke(verify, args)
    assert first.output == again.output == res.output
    assert (cache / "5pt-jitter1" / "encodings.npy").is_file()

    # an explicit threshold below the genuine distance flips the decision
    t = rows[0]["distance"] / 2
    res = _invoke(
        verify,
        ["--pairs", str(pairs), "--root", str(faces_dir), "--json", "--threshold", str(t)],
    )
    assert json.loads(res.output.splitlines()[0])["same"] is False

    # --no-flip: the plain encodings (other distances), judged at their own threshold
    res = _invoke(verify, ["--pairs", str(pairs), "--root", str(faces_dir), "--json", "--no-flip"])
    plain = [json.loads(line) for line in res.output.splitlines()]
    assert plain[0]["same"] is True and plain[1]["same"] is False
    assert plain[0]["distance"] != rows[0]["distance"]
    assert plain[1]["distance"] > V.calibrated_threshold(1, flip=False)


@pytest.mark.slow
def test_verify_cli_summary_and_bad_input(faces_dir: Path, tmp_path: Path) -> None:
    pairs = _pairs_file(faces_dir, tmp_path)
    res = _invoke(verify, ["--pairs", str(pairs), "--root", str(faces_dir)])
    assert res.exit_code == 0, res.output
    assert "pairs: 4  verified: 2  errors: 2" in res.output
    assert "accuracy: 100.00 % on 2 labelled pairs" in res.output
    assert "error: astronaut.png  missing.png" in res.output
    assert "encodings: flip-averaged, gray images tinted" in res.output
    res = _invoke(verify, ["--pairs", str(pairs), "--root", str(faces_dir), "--gray", "replicate"])
    assert res.exit_code == 0 and "gray images replicated" in res.output
    res = _invoke(verify, ["--pairs", str(pairs), "--root", str(faces_dir), "--gray", "sepia"])
    assert res.exit_code != 0 and "--gray" in res.output

    bad = tmp_path / "bad.tsv"
    bad.write_text("1\ta.png\tb.png\tmaybe\n")
    res = _invoke(verify, ["--pairs", str(bad), "--root", str(faces_dir)])
    assert res.exit_code != 0 and "SAME must be 1 or 0" in res.output
    res = _invoke(verify, ["--pairs", str(tmp_path / "none.tsv")])
    assert res.exit_code != 0 and "pairs file not found" in res.output
