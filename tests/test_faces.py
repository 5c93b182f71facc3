"""The synthetic faces of the bundled sample: expressions are where they should be, identities vary
independently of them, and a plain nearest-centroid classifier reads the emotion off unseen people."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from elmd.data.faces import EXPRESSIONS, Motion, draw_face, face_clip, face_regions, identity_for

SIZE = 112
EMOTIONS = list(EXPRESSIONS)

# Regions in which each expression must visibly differ from the same person's neutral face.
EXPECTED = {
    "happy": {"mouth", "eyes"},
    "surprise": {"mouth", "eyes", "brows"},
    "sad": {"mouth", "brows"},
    "disgust": {"mouth", "eyes", "brows", "nose"},
    "anger": {"mouth", "brows"},
    "fear": {"mouth", "eyes", "brows"},
}


def _boxes(identity):
    return {
        name: (slice(int(y0 * SIZE), int(np.ceil(y1 * SIZE))), slice(int(x0 * SIZE), int(np.ceil(x1 * SIZE))))
        for name, (x0, y0, x1, y1) in face_regions(identity).items()
    }


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(-1) > 40


@pytest.mark.parametrize("key", ["s01-1/小林", "s07-3/王姐", "x/B"])
def test_each_expression_changes_its_regions_and_nothing_else(key):
    identity = identity_for(key)
    neutral = draw_face("neutral", identity, SIZE)
    boxes = _boxes(identity)
    inside = np.zeros((SIZE, SIZE), bool)
    for box in boxes.values():
        inside[box] = True
    for emotion, regions in EXPECTED.items():
        changed = _changed(draw_face(emotion, identity, SIZE), neutral)
        counts = {name: int(changed[box].sum()) for name, box in boxes.items()}
        for name in regions:
            assert counts[name] >= (8 if name == "nose" else 15), (emotion, name, counts)
        if "nose" not in regions:
            assert counts["nose"] <= 4, (emotion, counts)
        # nothing outside the facial features encodes the emotion (hair, background, clothes, face outline)
        assert not changed[~inside].any(), emotion


def test_expressions_follow_the_documented_table():
    ex = EXPRESSIONS
    assert ex["happy"].mouth_curve > 0.05 and ex["happy"].mouth_open > 0.05  # big upturned open smile
    assert ex["sad"].mouth_curve < -0.05 and ex["sad"].brow_tilt > 0.04  # frown, inner brows raised
    assert ex["anger"].brow_tilt < -0.05 and ex["anger"].mouth_open == 0  # V-brows, tight closed mouth
    for e in ("surprise", "fear"):  # raised brows, wide eyes, open mouth
        assert ex[e].brow_raise > 0.04 and ex[e].eye_open > 1.5 and ex[e].mouth_open > 0.05
    assert ex["surprise"].mouth_width < 0.13 < 0.25 < ex["fear"].mouth_width  # round O vs stretched
    assert ex["disgust"].lip_raise > 0.05 and ex["disgust"].eye_open < 0.6 and ex["disgust"].brow_raise < 0
    assert ex["neutral"].mouth_curve == 0 and ex["neutral"].mouth_open == 0


def test_identities_are_deterministic_and_varied():
    assert identity_for("d1/A") == identity_for("d1/A")
    people = [identity_for(f"d{i}/{s}") for i in range(30) for s in "AB"]
    assert len({p.skin for p in people}) > 20 and len({p.hair for p in people}) > 20
    assert len({p.hair_style for p in people}) == 3
    assert np.ptp([p.eye_spacing for p in people]) > 0.02 and np.ptp([p.face_w for p in people]) > 0.03
    # two people look different even with the same expression
    assert _changed(draw_face("neutral", people[0]), draw_face("neutral", people[1])).mean() > 0.05


def test_clip_eases_in_blinks_and_is_deterministic():
    identity = identity_for("clip/A")
    clip = face_clip("surprise", identity, size=SIZE, seconds=1.5, fps=10, seed="k")
    assert clip.shape == (15, SIZE, SIZE, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, face_clip("surprise", identity, size=SIZE, seconds=1.5, fps=10, seed="k"))
    assert not np.array_equal(clip, face_clip("surprise", identity, size=SIZE, seconds=1.5, fps=10, seed="other"))
    full = draw_face("surprise", identity, SIZE).astype(float)
    dist = [np.abs(f.astype(float) - full).mean() for f in clip[:5]]
    assert dist[0] > dist[2] > dist[4]  # the expression builds up over the first frames
    # one blink: the eye whites all but vanish in 1-3 consecutive frames
    eyes = _boxes(identity)["eyes"]
    whites = np.array([int((f[eyes].min(-1) > 235).sum()) for f in clip])
    closed = np.flatnonzero(whites < 0.3 * np.median(whites))
    assert 1 <= len(closed) <= 3 and np.ptp(closed) == len(closed) - 1, whites
    # head motion: frames differ even once the expression is complete
    assert not np.array_equal(clip[-1], clip[-2])


def _features(frame: np.ndarray, side: int = 24) -> np.ndarray:
    """Downsampled grayscale of the face's centre, standardised per image."""
    img = Image.fromarray(frame).convert("L")
    w = img.size[0]
    img = img.crop((int(0.22 * w), int(0.3 * w), int(0.78 * w), int(0.86 * w))).resize((side, side), Image.BOX)
    g = np.asarray(img, dtype=np.float64).ravel()
    return (g - g.mean()) / (g.std() + 1e-6)


def _dataset(prefix: str, people: int, seed: int):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for p in range(people):
        identity = identity_for(f"{prefix}{p}/A")
        for label, emotion in enumerate(EMOTIONS):
            for _ in range(2):  # random head pose, as in the clips
                motion = Motion(dx=rng.uniform(-0.015, 0.015), dy=rng.uniform(-0.012, 0.012), tilt=rng.uniform(-3, 3))
                xs.append(_features(draw_face(emotion, identity, SIZE, motion)))
                ys.append(label)
    return np.array(xs), np.array(ys)


def test_nearest_centroid_reads_emotion_of_unseen_people():
    x_train, y_train = _dataset("train", 24, seed=0)
    x_test, y_test = _dataset("heldout", 12, seed=1)
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(len(EMOTIONS))])
    pred = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = float((pred == y_test).mean())
    per_class = [float((pred[y_test == k] == k).mean()) for k in range(len(EMOTIONS))]
    assert accuracy >= 0.9, (accuracy, per_class)  # chance is 1/7; measured ~0.98
    assert min(per_class) >= 0.75, per_class
