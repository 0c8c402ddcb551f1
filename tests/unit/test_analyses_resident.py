"""A cell reads small stores into memory once, and leaves large ones out of core."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from sn_interp.analyses import _data


def _lazy(n: int = 6) -> xr.Dataset:
    x = da.from_array(np.arange(n * 4, dtype=np.float32).reshape(n, 4), chunks=(2, 4))
    return xr.Dataset({"resid_post": (("sample", "d_model"), x)})


def test_small_acts_are_computed_into_memory() -> None:
    ds = _lazy()
    got = _data.resident(ds)
    assert isinstance(got["resid_post"].data, np.ndarray)
    assert isinstance(ds["resid_post"].data, da.Array)  # the store-backed input is untouched
    xr.testing.assert_identical(got, ds.compute())


def test_acts_above_the_limit_stay_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_data, "RESIDENT_BYTES", _lazy().nbytes - 1)
    ds = _lazy()
    assert _data.resident(ds) is ds
    both = _data.Acts(ds, _lazy(2)).resident()
    assert both.probe is ds and isinstance(both.test["resid_post"].data, np.ndarray)
