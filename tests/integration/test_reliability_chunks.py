"""Reliability, class 5: a store that lost a chunk is detected when opened, never read as NaN.

Deleted or truncated chunk files are found from the files and their codec headers;
``sn.open_store`` refuses naming the variables and sample chunks, ``sn.extract`` recomputes
them to a store identical to the undamaged one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _store_helpers import extract, samples, tree

import sn_interp as sn
import sn_interp.extraction as extract_mod
from sn_interp.store import StoreDamagedError, lost_chunks


@pytest.fixture(scope="module")
def vlm():
    return sn.load_model("tiny-llava")


# ---- class 5: stores that lost a chunk ----------------------------------------------------

def _chunk(path: Path, var: str, i: int) -> Path:
    import zarr

    arr = zarr.open_group(str(path), mode="r")[var]
    return path / var / arr.metadata.encode_chunk_key((i,) + (0,) * (arr.ndim - 1))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_lost_chunk_is_detected_at_open_and_recomputed_byextract(vlm, tmp_path, damage):
    path = tmp_path / "acts.zarr"
    extract(vlm, samples(5), path)
    whole = tree(path)
    f = _chunk(path, "z", 1)
    if damage == "delete":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:20])
    assert lost_chunks(path) == {"z": [1]}
    with pytest.raises(StoreDamagedError, match=r"lost chunk files .*\['z'\], sample chunks \[1\]"):
        sn.open_store(path)
    healed = extract(vlm, samples(5), path)
    assert np.isfinite(healed.z.values).all()
    assert tree(path) == whole  # identical to the store before the damage


def test_unwritten_batches_of_an_interrupted_store_are_not_lost_chunks(vlm, tmp_path,
                                                                        monkeypatch):
    real, calls = extract_mod.capture, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    path = tmp_path / "acts.zarr"
    monkeypatch.setattr(extract_mod, "capture", dying)
    with pytest.raises(KeyboardInterrupt):
        extract(vlm, samples(5), path)
    assert lost_chunks(path) == {}
    with pytest.raises(ValueError, match="unfinished"):
        sn.open_store(path)


def test_zstd_frame_walk_matches_the_codec(tmp_path):
    from numcodecs import Zstd

    from sn_interp.store import _zstd_complete

    data = np.random.default_rng(0).standard_normal(200_000).astype(np.float32).tobytes()
    for level, checksum in ((0, False), (3, True)):
        f = tmp_path / f"c{level}"
        f.write_bytes(Zstd(level=level, checksum=checksum).encode(data))
        assert _zstd_complete(f)
        whole = f.read_bytes()
        for cut in (1, 7, len(whole) // 2, len(whole) - 1):
            f.write_bytes(whole[:cut])
            assert not _zstd_complete(f), cut
