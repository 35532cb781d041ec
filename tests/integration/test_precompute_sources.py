"""The precompute over a source folder holding every kind of bad entry: each input the folder
holds is in the shards or the errors table (none missing, none twice), the animated GIF gives
clips, and the run does not abort."""

from __future__ import annotations

import pytest

from tests.support.bad_sources import BAD, GOOD, write_bad_source
from tests.support.latents import precompute_spec, quickstart_vae
from videomar.artifacts import storage
from videomar.artifacts.shards import shard_uris
from videomar.data_pipelines.errors import read_errors
from videomar.data_pipelines.precompute import run_precompute
from videomar.data_pipelines.sample_data import write_sample_videos

BUCKET = (5, 32, 32)


@pytest.mark.timeout(180)
def test_every_input_of_a_bad_folder_is_in_the_shards_or_the_errors(ray_cluster, tmp_path):
    import pyarrow.parquet as pq

    good = write_sample_videos(tmp_path / "sample", 1, frames=12).parent / "videos" / "00000.mp4"
    src = write_bad_source(tmp_path, good)
    spec = precompute_spec(str(src), quickstart_vae(tmp_path / "vae"), str(tmp_path / "latents"),
                           buckets=[dict(zip(("frames", "height", "width"), BUCKET))], max_error_fraction=1.0,
                           resources={"workers": 1, "cpus_per_worker": 0.5})
    summary = run_precompute(spec.config())
    expected = {storage.join(str(src), rel) for rel in (*GOOD, *BAD)}
    sources = [s for uri in shard_uris(summary.output, BUCKET) for s in pq.read_table(uri, columns=["source"])
               .column("source").to_pylist()]
    errors = {e.path: e for e in read_errors(summary.output)}
    missing = expected - set(sources) - set(errors)
    print(f"\nbad folder: {len(expected)} inputs ({len(GOOD)} good, {len(BAD)} bad); {len(set(sources))} in shards "
          f"({len(sources)} clips), {len(errors)} in errors; missing: {len(missing)}")
    assert not missing and set(sources) | set(errors) == expected
    assert set(sources) == {storage.join(str(src), rel) for rel in GOOD}  # the GIF included, each by one path
    assert len(sources) == 2 * len(GOOD)  # 12 frames: two clips of 5 each, none listed twice
    for rel, phrase in BAD.items():
        error = errors[storage.join(str(src), rel)]
        assert (error.stage, error.error_class) == ("list", "SourceProblem") and phrase in error.message
    assert summary.videos == len(expected) and summary.exit_status == 0
