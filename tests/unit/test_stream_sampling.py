"""A sample drawn from a stream in one pass (drcore.core.sampling): uniform over distinct names, whatever their order
or repeats, holding only the sample."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from drcore.core.sampling import StreamSample

NAMES = st.lists(st.text(max_size=8), max_size=60)


@given(names=NAMES, size=st.integers(0, 10), seed=st.integers(0, 2**32))
def test_a_sample_is_of_distinct_names_offered_whatever_their_order_and_repeats(names: list[str], size: int,
                                                                                  seed: int) -> None:
    # Given names offered with each one's position, once as listed and once reversed, with the same salt
    forward: StreamSample[int] = StreamSample(size, random.Random(seed), count_distinct=True)
    backward: StreamSample[int] = StreamSample(size, random.Random(seed), count_distinct=True)
    for position, name in enumerate(names):
        forward.offer(name, position)
    for position, name in reversed(list(enumerate(names))):
        backward.offer(name, position)
    chosen = forward.chosen()
    # Then it holds as many of the distinct names as asked (all, when fewer), in name order, each with the item
    # first offered under it, and counts the distinct names
    assert len(chosen) == min(size, len(set(names))) and list(chosen) == sorted(chosen)
    assert all(names[position] == name and names.index(name) == position for name, position in chosen.items())
    assert forward.distinct == backward.distinct == len(set(names))
    # and which names are chosen depends on the salt alone, not on the order they came in
    assert list(backward.chosen()) == list(chosen)


def test_each_name_is_as_likely_to_be_chosen_as_any_other() -> None:
    # Given 10 names, one offered 50 times over: a sample of 2 drawn with 3,000 salts
    names = [f"content/etag/{n:032x}-{n}" for n in range(10)]
    chosen: Counter[str] = Counter()
    for seed in range(3_000):
        sample: StreamSample[None] = StreamSample(2, random.Random(seed))
        for name in names + [names[3]] * 50:
            sample.offer(name, None)
        chosen.update(list(sample.chosen()))
    # Then each name was chosen about 600 times (2 in 10 of 3,000), the repeated one no more often
    assert set(chosen) == set(names)
    assert all(520 <= count <= 680 for count in chosen.values()), chosen
