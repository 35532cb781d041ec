"""Ray Data pipelines: sources, clip decoding, VAE encoding, Parquet latent shards, readers."""
