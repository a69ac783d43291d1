"""Fixtures of the SLAC tests: the network-namespace bench (root only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ccsbus_slac.bench import NetnsBench, unavailable_reason


@pytest.fixture
def netns_bench() -> Iterator[Callable[[int], NetnsBench]]:
    """`make(n)` builds n namespaces with `eth1` on a virtual medium; all removed afterwards."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    benches: list[NetnsBench] = []

    def make(count: int) -> NetnsBench:
        bench = NetnsBench(count)
        benches.append(bench)
        bench.open()
        return bench

    yield make
    for bench in benches:
        bench.close()
