"""Using a trained model: face detection and expression prediction on photos and videos."""
