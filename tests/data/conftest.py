"""Fixtures shared by the data tests: the digits spec and its 360-record test split."""

import pytest

from mlcv import data


@pytest.fixture(scope="module")
def spec():
    return data.get("digits")


@pytest.fixture(scope="module")
def src(spec):
    return data.source(spec, "test")  # 360 records
