"""Using a trained model: face detection and expression prediction on photos and videos."""

# The defaults of every detector and of the predict command, in one place (no OpenCV import here).
DEFAULT_DETECTOR = "mtcnn"
MIN_FACE = 32  # smallest face side, in pixels
