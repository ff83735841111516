"""fer-workbench: an experiment-tracked workbench for facial-expression classification."""

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASS_NAMES)

__version__ = "0.1.0"
