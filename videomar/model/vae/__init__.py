"""Video VAEs behind one interface (VideoVAE): the built-in causal video VAE, and pretrained
diffusers VAEs (image AutoencoderKL frame by frame; Wan, Cosmos, CogVideoX, LTX-Video) loaded from
a local directory."""

from videomar.model.vae.base import VideoVAE, sample_posterior
from videomar.model.vae.causal import CausalVideoVAE
from videomar.model.vae.config import VAEConfig
from videomar.model.vae.loading import load_vae, read_config, vae_geometry

__all__ = ["CausalVideoVAE", "VAEConfig", "VideoVAE", "load_vae", "read_config", "sample_posterior", "vae_geometry"]
