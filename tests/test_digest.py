"""The one SHA-256 helper: file digests keep the values cache keys and model identities already hold."""

import hashlib

import numpy as np

from optbench.digest import feeds_digest, file_digest, file_sha256, tree_digest


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # over one read chunk
    (tmp_path / "m.onnx").write_bytes(data)
    assert file_sha256(tmp_path / "m.onnx") == hashlib.sha256(data).hexdigest()
    assert file_digest(tmp_path / "m.onnx") == hashlib.sha256(data).hexdigest()[:16]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"w")
    before = tree_digest(tmp_path)
    (tmp_path / "sub" / "w.bin").write_bytes(b"x")
    assert tree_digest(tmp_path) != before


def test_feeds_digest_reads_names_in_sorted_order_and_every_value():
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.int64)
    assert feeds_digest([{"a": a, "b": b}]) == feeds_digest([{"b": b, "a": a}])
    assert feeds_digest([{"a": a, "b": b}]) != feeds_digest([{"a": a, "b": b * 2}])
    assert feeds_digest([{"a": a[:, ::2]}]) == feeds_digest([{"a": np.ascontiguousarray(a[:, ::2])}])
