"""The platform: job specs, Ray Train + DeepSpeed training, MLflow tracking, Ray Serve, the CLI."""
