"""The classifier behind `workbench.predict`: faces found in a picture, cut, resized to the model's
input and classified in batches; the model is the shipped one or any MLflow model URI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from workbench.errors import WorkbenchError
from workbench.serve import DEFAULT_DETECTOR

UNCERTAIN = "uncertain"
# Faces are found on a copy no larger than this (a 10000 px photo would need ~15 GB to search); the
# boxes are mapped back to the photo and the faces cut from it, so only faces that end up under
# --min-face on the copy are missed.
DETECT_MAX_SIDE = 2560


@dataclass
class FacePrediction:
    file: str
    frame: int | None
    time_s: float | None
    face: int
    left: int
    top: int
    right: int
    bottom: int
    label: str
    probability: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict:
        d = asdict(self)
        probs = d.pop("probabilities")
        return d | {f"p_{k}": round(v, 6) for k, v in probs.items()}


def load_classifier(uri: str | None):
    """The model at an MLflow URI, or the shipped one when no URI is given (said on one line)."""
    if uri is None:
        from workbench.serve import shipped

        if not shipped.available():
            raise WorkbenchError(
                f"no --model given and this install has no shipped model ({shipped.MODEL_FILE}); "
                "pass --model runs:/<run_id>/model"
            )
        print(f"using {shipped.describe()}")
        return shipped.load_model()
    import mlflow
    from mlflow.exceptions import MlflowException

    from workbench.core.models import inputs  # noqa: F401  (registers FaceCrop for the loader)
    from workbench.tracking import store

    mlflow.set_tracking_uri(store.tracking_uri())
    try:
        model = mlflow.tensorflow.load_model(uri)
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WorkbenchError(f"--model {uri}: cannot load it ({first[:200]})") from None
    return model


def view_probabilities(model, faces, tta: str, batch_size: int):
    """The model's probabilities averaged over `tta`'s views of each face, one call a batch:
    model.predict's per-call overhead would dominate a photo's few faces."""
    import numpy as np

    from workbench.core.models.inputs import crop_of
    from workbench.core.tta import views

    def batched(x):
        step = batch_size
        return np.concatenate(
            [np.asarray(model(x[i : i + step], training=False)) for i in range(0, len(x), step)]
        )

    return np.mean([batched(v) for v in views(faces, tta, crop_of(model))], axis=0)


class Predictor:
    def __init__(
        self,
        model,
        min_face: int,
        threshold: float,
        batch_size: int,
        detector: str = DEFAULT_DETECTOR,
        align: bool = True,
        tta: str = "none",
    ):
        from workbench import CLASS_NAMES
        from workbench.serve.detect import make_detector

        self.model, self.threshold, self.batch_size = model, threshold, batch_size
        self.tta = tta  # the test-time views averaged, as a model card's figures were computed
        self.size = int(model.input_shape[1])
        self.channels = int(model.input_shape[-1])  # 1 = a grey model (FER-2013's form), 3 = RGB
        self.classes = list(CLASS_NAMES)
        self.detector = make_detector(detector, min_face)
        self.align = align

    def classify(self, rgb, faces):
        """(label, top probability, all probabilities) per face, in batches."""
        import numpy as np

        from workbench.data.decode import resize_face
        from workbench.serve.detect import crop

        if not faces:
            return []
        crops = np.stack(
            [resize_face(crop(rgb, f, self.align), self.size, self.channels) for f in faces]
        ).astype(np.float32)
        probs = view_probabilities(self.model, crops, self.tta, self.batch_size)
        out = []
        for p in probs:
            k = int(p.argmax())
            label = self.classes[k] if p[k] >= self.threshold else UNCERTAIN
            out.append(
                (label, round(float(p[k]), 6), {c: float(v) for c, v in zip(self.classes, p)})
            )
        return out

    def detect(self, rgb):
        import cv2

        scale = DETECT_MAX_SIDE / max(rgb.shape[:2])
        if scale >= 1:
            return self.detector.detect(rgb)
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return [face.scaled(1 / scale) for face in self.detector.detect(small)]

    def faces(self, rgb, file: str, frame=None, time_s=None) -> list[FacePrediction]:
        found = self.detect(rgb)
        return [
            FacePrediction(
                file,
                frame,
                time_s,
                i,
                f.box.left,
                f.box.top,
                f.box.right,
                f.box.bottom,
                label,
                p,
                probs,
            )
            for i, (f, (label, p, probs)) in enumerate(zip(found, self.classify(rgb, found)))
        ]


def annotate(bgr, predictions: list[FacePrediction]):
    import cv2

    thickness = max(1, round(min(bgr.shape[:2]) / 300))
    for f in predictions:
        colour = (160, 160, 160) if f.label == UNCERTAIN else (40, 200, 40)
        cv2.rectangle(bgr, (f.left, f.top), (f.right, f.bottom), colour, thickness)
        text = f"{f.label} {f.probability:.0%}"
        scale = min(1.0, max(0.4, (f.right - f.left) / 250))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = f.top - 4 if f.top - th - 8 > 0 else f.bottom + th + 4
        cv2.rectangle(bgr, (f.left, y - th - 4), (f.left + tw + 4, y + 4), colour, -1)
        cv2.putText(
            bgr,
            text,
            (f.left + 2, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return bgr
