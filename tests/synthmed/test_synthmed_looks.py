"""Every modality has its own look: channels, intensity, texture and colour statistics tell them apart."""
from __future__ import annotations

import numpy as np

from synthmed import MODALITY_NAMES, generate_sample

PER_MODALITY = 6


def _features(image: np.ndarray) -> np.ndarray:
    """Mean per channel (grey repeated), std, dark fraction, relative roughness inside the field of view (mean
    absolute vertical difference / mean intensity), colour spread."""
    x = image.astype(np.float32) / 255.0
    rgb = x if x.ndim == 3 else np.repeat(x[..., None], 3, axis=-1)
    grey = rgb.mean(axis=-1)
    inside = grey > 0.05
    pairs = inside[1:] & inside[:-1]
    roughness = np.abs(np.diff(grey, axis=0))[pairs].mean() / grey[inside].mean()
    return np.array([*rgb.mean(axis=(0, 1)), grey.std(), (grey < 0.05).mean(), roughness,
                     (rgb.max(axis=-1) - rgb.min(axis=-1)).mean()])


def _images() -> dict[str, list[np.ndarray]]:
    return {m: [generate_sample(17, i, 128, (m,)).image for i in range(PER_MODALITY)] for m in MODALITY_NAMES}


def test_channels() -> None:
    for modality, images in _images().items():
        for image in images:
            assert image.dtype == np.uint8 and image.shape[:2] == (128, 128)
            if modality in ("pathology", "endoscopy", "dermoscopy"):
                assert image.shape == (128, 128, 3)
            else:
                assert image.shape == (128, 128)


def test_modalities_are_told_apart_by_simple_statistics() -> None:
    """Leave-one-out nearest centroid on 8 image statistics recognises the modality of every image."""
    feats = {m: np.stack([_features(im) for im in ims]) for m, ims in _images().items()}
    allf = np.concatenate(list(feats.values()))
    scale = allf.std(axis=0) + 1e-6
    correct = total = 0
    for m, f in feats.items():
        for i in range(len(f)):
            centroids = {k: (np.delete(v, i, axis=0) if k == m else v).mean(axis=0) for k, v in feats.items()}
            guess = min(centroids, key=lambda k: np.linalg.norm((f[i] - centroids[k]) / scale))
            correct += guess == m
            total += 1
    assert correct / total >= 0.95


def test_characteristic_looks() -> None:
    images = _images()
    mean = {m: np.mean([_features(im) for im in ims], axis=0) for m, ims in images.items()}
    r, g, b = 0, 1, 2
    assert mean["pathology"][r] > mean["pathology"][g] and mean["pathology"][b] > mean["pathology"][g]  # pink H&E
    assert mean["endoscopy"][r] > 1.5 * mean["endoscopy"][g]  # red mucosa
    assert mean["dermoscopy"][r] > mean["dermoscopy"][g] > mean["dermoscopy"][b]  # skin and brown pigment
    # dark outside the field of view: round optics, body outline, ultrasound fan; the chest film fills the frame
    for m in ("ct", "mri", "ultrasound", "endoscopy"):
        assert mean[m][4] > 0.15, m
    assert mean["xray"][4] < 0.05 and mean["pathology"][4] < 0.01
    # multiplicative speckle makes ultrasound the roughest modality relative to its brightness
    assert mean["ultrasound"][5] > 1.2 * max(mean[m][5] for m in MODALITY_NAMES if m != "ultrasound")
