"""What videomar keeps on storage, and how to reach it: the layer below data_pipelines.

    storage    URIs (local paths and s3://), one atomic write, tree copies
    layout     the file names inside exports, defined once
    manifest   the latent dataset's manifest.json
    shards     the Parquet latent shards of a dataset
    export     a finished stage's export (weights, config, spec, VAE, COMPLETE marker)
    vae_export a VAE's export
    checkpoint what a training checkpoint holds beside DeepSpeed's shards, and its readers
    media      videos people watch: MP4, GIF and PNG contact sheets

Training, evaluation and serving depend on these formats, not on each other.
"""
