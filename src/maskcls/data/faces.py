"""Face detection, 68-point landmarks and face descriptors with dlib, the one place that loads dlib's model files.

Two detectors: dlib's HOG + linear SVM (``hog``) and the CNN (max-margin object detector, ``cnn``)
bundled with ``face-recognition-models``; ``auto`` runs HOG and falls back to the CNN where HOG finds
nothing. ``benchmarks/face_detectors.py`` measures them on real photos; README "Face detection" has
the numbers and the reason for the defaults.
Landmarks follow the iBUG 300-W convention: 0-16 jaw, 17-26 brows, 27-35 nose (30 = tip),
36-47 eyes, 48-67 mouth.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DETECTORS = ("hog", "cnn", "auto")
DEFAULT_DETECTOR = (
    "auto"  # HOG finds 99 % of aligned crops fast; the CNN rescues most of the rest (README "Face detection")
)
DEFAULT_UPSAMPLE = 1
_MODEL_FILES = {
    "landmarks": "shape_predictor_68_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",  # what the face descriptor aligns with
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


def model_path(name: str) -> Path:
    """Path of a dlib model file bundled with ``face-recognition-models``.

    Importing that package fails on current setuptools (it imports ``pkg_resources``), so its
    folder is found without importing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("face_recognition_models is not installed", name="face_recognition_models")
    path = Path(spec.submodule_search_locations[0]) / "models" / _MODEL_FILES[name]
    if not path.is_file():
        raise ModuleNotFoundError(
            f"face_recognition_models has no {path.name}; reinstall it", name="face_recognition_models"
        )
    return path


@dataclass(frozen=True)
class Face:
    """One detected face: box (left, top, right, bottom, in pixels), detector score, landmarks ``(68, 2)`` x, y."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]


class FaceFinder:
    """A detector (``hog``, ``cnn`` or ``auto``, with ``upsample`` doublings of the photo) and the landmark model.

    ``pad`` adds a black border of that fraction of the longer side before detecting: both detectors
    miss faces cut by the frame (tight crops), and boxes may then reach outside the photo.
    Calls from several threads take turns: dlib's detectors run many times slower when threads
    call them at once (measured: 420 photos in 7.3 s from two threads, 1.5 s taking turns).
    """

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        upsample: int = DEFAULT_UPSAMPLE,
        landmarks: bool = True,
        pad: float = 0.0,
    ):
        if detector not in DETECTORS:
            raise ValueError(f"unknown face detector '{detector}'; choose one of {', '.join(DETECTORS)}")
        if not 0 <= upsample <= 3:
            raise ValueError(f"face detector upsampling must be 0..3, got {upsample}")
        import dlib  # noqa: F401  (fail here, with the extra's name, rather than deep inside a job)

        self.detector = detector
        self.upsample = int(upsample)
        self.with_landmarks = landmarks
        self.pad = float(pad)
        if landmarks:
            model_path("landmarks")
        self._lock = threading.Lock()
        self._loaded = None

    def _models(self):
        if self._loaded is None:
            import dlib

            hog = dlib.get_frontal_face_detector() if self.detector in ("hog", "auto") else None
            cnn = dlib.cnn_face_detection_model_v1(str(model_path("cnn"))) if self.detector in ("cnn", "auto") else None
            shape = dlib.shape_predictor(str(model_path("landmarks"))) if self.with_landmarks else None
            self._loaded = (hog, cnn, shape)
        return self._loaded

    def find(self, image: np.ndarray) -> list[Face]:
        """Faces in an ``(H, W, 3)`` uint8 RGB photo, largest first, with landmarks when enabled."""
        with self._lock:
            return self._find(image)

    def _find(self, image: np.ndarray) -> list[Face]:
        hog, cnn, shape = self._models()
        border = round(self.pad * max(image.shape[:2]))
        if border:
            image = np.pad(image, ((border, border), (border, border), (0, 0)))
        image = np.ascontiguousarray(image)
        found = []
        if hog is not None:
            rects, scores, _ = hog.run(image, self.upsample, 0.0)
            found = list(zip(rects, scores, strict=False))
        if cnn is not None and not found:
            found = [(d.rect, d.confidence) for d in cnn(image, self.upsample)]
        faces = []
        for rect, score in found:
            points = None
            if shape is not None:
                parts = shape(image, rect).parts()
                points = np.array([(p.x - border, p.y - border) for p in parts], dtype=np.float32)
            box = (rect.left() - border, rect.top() - border, rect.right() - border, rect.bottom() - border)
            faces.append(Face(box, float(score), points))
        return sorted(faces, key=lambda f: -f.width)

    def landmarks(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The 68 landmarks inside a known face box."""
        import dlib

        with self._lock:
            *_, shape = self._models()
            parts = shape(np.ascontiguousarray(image), dlib.rectangle(*[int(v) for v in box])).parts()
        return np.array([(p.x, p.y) for p in parts], dtype=np.float32)


class FaceDescriber:
    """dlib's 128-d face descriptor (the ResNet of ``face-recognition-models``), models loaded once, offline.

    The largest face dlib's HOG detector finds is described; where it finds none (masked faces often defeat
    it), the whole photo is taken as the face box, so every photo gets a descriptor.
    """

    def __init__(self, upsample: int = 0):
        import dlib

        self._dlib = dlib
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(model_path("landmarks5")))
        self._encoder = dlib.face_recognition_model_v1(str(model_path("descriptor")))

    def face_box(self, photo: np.ndarray) -> tuple[tuple[int, int, int, int], bool]:
        """(left, top, right, bottom) of the largest face, and whether one was found (else the whole photo)."""
        faces = self._detector(photo, self.upsample)
        if not faces:
            return (0, 0, photo.shape[1] - 1, photo.shape[0] - 1), False
        face = max(faces, key=lambda found: found.area())
        return (face.left(), face.top(), face.right(), face.bottom()), True

    def describe(self, photo: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """The descriptor of the face in ``box`` (found with ``face_box`` when None) of an ``(H, W, 3)`` uint8 photo."""
        photo = np.ascontiguousarray(photo)
        box = box if box is not None else self.face_box(photo)[0]
        shape = self._landmarks(photo, self._dlib.rectangle(*[int(v) for v in box]))
        return np.asarray(self._encoder.compute_face_descriptor(photo, shape), dtype=np.float32)
