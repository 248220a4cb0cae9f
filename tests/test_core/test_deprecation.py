"""earl_core.deprecation: old names read the new ones, with a FutureWarning naming both."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest

from earl_core.deprecation import renamed_attribute


@dataclass
class _Box:
    rater: str

    rad_id = renamed_attribute('rater')

    def count(self, k: int) -> int:
        return 2 * k

    votes = renamed_attribute('count')


def test_renamed_attribute_reads_the_new_one_with_a_warning():
    box = _Box('r1')
    with pytest.warns(FutureWarning, match=r'_Box\.rad_id is deprecated .* use _Box\.rater '):
        assert box.rad_id == 'r1'
    with pytest.warns(FutureWarning, match=r'_Box\.votes\(\) .* use _Box\.count\(\)'):
        assert box.votes(3) == 6


def test_renamed_attribute_is_no_field_and_silent_on_the_class():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert isinstance(_Box.rad_id, renamed_attribute)  # class access: the descriptor
        assert _Box('r2').rater == 'r2'  # the new name alone: no warning
    with pytest.raises(TypeError):
        _Box(rad_id='r3')  # the constructor takes only the new name
