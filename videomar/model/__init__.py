"""VideoMAR in pure PyTorch. Imports nothing from Ray, MLflow or the platform."""
