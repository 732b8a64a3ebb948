"""An agent's own input positions: each record folded once, in order, whatever the
fetcher delivers."""

from __future__ import annotations

import pytest

from streams.offsets import MemoryOffsets, Position


async def admitted(position: Position, deliveries: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(p, o) for p, o in deliveries if await position.admit(p, o)]


@pytest.mark.asyncio
async def test_a_partition_starts_at_its_committed_offset_and_folds_each_record_once() -> None:
    offsets = MemoryOffsets(commits={("t", 0): 5})
    position = Position("t", offsets)
    # The fetcher hands over records from before the committed offset and again after a
    # seek: only 5, 6, 7 are folded, once each.
    got = await admitted(position, [(0, 3), (0, 4), (0, 5), (0, 6), (0, 5), (0, 6), (0, 7)])
    assert got == [(0, 5), (0, 6), (0, 7)]
    assert offsets.seeks == []


@pytest.mark.asyncio
async def test_a_partition_with_no_committed_offset_starts_where_the_fetcher_does() -> None:
    position = Position("t", MemoryOffsets())
    assert await admitted(position, [(1, 40), (1, 41), (0, 0)]) == [(1, 40), (1, 41), (0, 0)]


@pytest.mark.asyncio
async def test_records_past_a_skip_are_not_folded_and_the_partition_is_sought_back() -> None:
    offsets = MemoryOffsets(commits={("t", 0): 0})
    position = Position("t", offsets, reseek_s=3600)
    # 0..2 arrive, then the fetcher jumps to 6: nothing past the hole is folded, and the
    # partition is sought back to 3 once, however many records past it still come
    # (and again only if the record sought for has not come within reseek_s).
    got = await admitted(position, [(0, 0), (0, 1), (0, 2), (0, 6), (0, 7), (0, 8)])
    assert got == [(0, 0), (0, 1), (0, 2)]
    assert offsets.seeks == [("t", 0, 3)]
    await position.watch()
    assert offsets.seeks == [("t", 0, 3)]
    # Read again from 3: folded in order, on past the records passed over.
    got = await admitted(position, [(0, 3), (0, 4), (0, 5), (0, 6), (0, 7)])
    assert got == [(0, 3), (0, 4), (0, 5), (0, 6), (0, 7)]


@pytest.mark.asyncio
async def test_a_partition_sought_back_is_sought_again_until_the_record_comes() -> None:
    offsets = MemoryOffsets(commits={("t", 0): 0})
    position = Position("t", offsets, reseek_s=0)
    # Skipped to 2; the fetcher's batch in hand goes on (3) and then nothing comes.
    assert await admitted(position, [(0, 2), (0, 3)]) == []
    assert offsets.seeks == [("t", 0, 0)]
    await position.watch()
    assert offsets.seeks == [("t", 0, 0), ("t", 0, 0)]
    # Once the record sought for comes, no more seeks.
    assert await admitted(position, [(0, 0)]) == [(0, 0)]
    await position.watch()
    assert offsets.seeks == [("t", 0, 0), ("t", 0, 0)]


@pytest.mark.asyncio
async def test_a_revoked_partition_starts_again_from_the_committed_offset() -> None:
    offsets = MemoryOffsets(commits={("t", 0): 0})
    position = Position("t", offsets)
    assert await admitted(position, [(0, 0), (0, 1), (0, 2)]) == [(0, 0), (0, 1), (0, 2)]
    await offsets.commit("t", {0: 2})
    position.forget([0])
    # Its next owner (here the same worker) folds from the commit: 2 again, then on.
    assert await admitted(position, [(0, 2), (0, 3)]) == [(0, 2), (0, 3)]


@pytest.mark.asyncio
async def test_a_partition_standing_still_behind_its_end_is_sought() -> None:
    offsets = MemoryOffsets(commits={("t", 0): 3, ("t", 1): 0}, ends={("t", 0): 10, ("t", 1): 0})
    position = Position("t", offsets, stall_s=0)
    assert await admitted(position, [(0, 3), (0, 4)]) == [(0, 3), (0, 4)]
    await position.watch()  # first look: remembered, nothing sought
    assert offsets.seeks == []
    await position.watch()  # no progress since, 5 short of the end: sought to 5
    assert offsets.seeks == [("t", 0, 5)]
    # Partition 1 is at its end: never sought however long it stands still.
    await position.watch()
    assert ("t", 1, 0) not in offsets.seeks


@pytest.mark.asyncio
async def test_an_owned_partition_that_never_delivered_is_sought_to_its_committed_offset() -> None:
    offsets = MemoryOffsets(commits={("t", 2): 7}, ends={("t", 2): 9})
    position = Position("t", offsets, stall_s=0)
    await position.watch()
    await position.watch()
    assert offsets.seeks == [("t", 2, 7)]
    assert await admitted(position, [(2, 7), (2, 8)]) == [(2, 7), (2, 8)]
