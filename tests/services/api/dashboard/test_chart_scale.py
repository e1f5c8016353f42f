"""The stats chart's y axis (services/api/dashboard/chart.py): the top is the smallest of
2, 4, 10, 20, 40, 100, … at least the largest count, so its half-way label is a whole count."""
from __future__ import annotations

import pytest

from services.api.dashboard.chart import _nice_max


@pytest.mark.parametrize("n,top", [(0, 2), (1, 2), (3, 4), (5, 10), (11, 20), (30, 40), (45, 100), (101, 200)])
def test_the_top_is_the_smallest_nice_even_ceiling(n, top):
    assert _nice_max(n) == top and top % 2 == 0 and top >= n
