"""Storage on local disk and on a real S3 server on loopback."""

from __future__ import annotations

import json
import os
import threading

import pytest

from videomar.artifacts import storage


def roundtrip(root: str, tmp_path) -> None:
    target = storage.join(root, "a", "b.bin")
    assert not storage.exists(target)
    storage.write_bytes_atomic(target, b"first")
    storage.write_bytes_atomic(target, b"second")
    assert storage.exists(target)
    assert storage.read_bytes(target) == b"second"
    storage.write_bytes_atomic(storage.join(root, "a", "c.txt"), b"c")
    assert [os.path.basename(u) for u in storage.list_dir(storage.join(root, "a"))] == ["b.bin", "c.txt"]

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "x.json").write_bytes(b"{}")
    (src / "sub" / "y.bin").write_bytes(b"\x00\x01")
    storage.copy_tree(str(src), storage.join(root, "up"))
    back = tmp_path / "back"
    storage.copy_tree(storage.join(root, "up"), str(back))
    assert (back / "x.json").read_bytes() == b"{}"
    assert (back / "sub" / "y.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        storage.read_bytes(storage.join(root, "nothing-here"))


@pytest.mark.timeout(60)
def test_local_storage(tmp_path):
    root = str(tmp_path / "store")
    roundtrip(root, tmp_path)
    assert not storage.is_s3(root)
    # No temporary siblings are left behind by atomic writes.
    assert sorted(os.listdir(os.path.join(root, "a"))) == ["b.bin", "c.txt"]


@pytest.mark.timeout(60)
def test_s3_storage(s3_server, tmp_path):
    root = s3_server.uri("storage-test")
    assert storage.is_s3(root)
    roundtrip(root, tmp_path)
    fs, path = storage.filesystem(root)
    assert fs.type_name == "s3" and path == f"{s3_server.bucket}/storage-test"


def test_join():
    assert storage.join("s3://b/k/", "x", "/y") == "s3://b/k/x/y"
    assert storage.join("/tmp/a", "b") == os.path.join("/tmp/a", "b")


@pytest.mark.timeout(60)
def test_s3_reads_see_whole_versions_while_the_object_is_rewritten(s3_server):
    """A batch's status document is rewritten as its inputs finish while GETs read it: each read
    returns one whole version (pyarrow's HEAD-then-ranged-GET read cut it at the old size)."""
    uri = s3_server.uri("rewritten", "status.json")
    versions = [json.dumps({"n": i, "pad": "x" * (i % 37)}).encode() for i in range(400)]
    storage.write_bytes_atomic(uri, versions[0])
    writer = threading.Thread(target=lambda: [storage.write_bytes_atomic(uri, v) for v in versions[1:]])
    writer.start()
    reads = []
    while writer.is_alive():
        reads.append(storage.read_bytes(uri))
    writer.join()
    assert len(reads) > 20
    assert all(read in versions for read in reads), [r for r in reads if r not in versions][:3]
