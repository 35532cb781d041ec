"""videomar: train and serve VideoMAR, an autoregressive video generator with continuous tokens, on Ray.

Code areas (dependencies point one way: platform -> data_pipelines -> model):
  videomar.model           pure PyTorch: the VideoMAR network, diffusion head, sampler, VAEs
  videomar.data_pipelines  Ray Data: decoding, VAE encoding, Parquet latent shards
  videomar.platform        job specs, training, tracking, serving, submission, the CLI
"""

__version__ = "0.1.0"
