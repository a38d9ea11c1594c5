"""A deployment's schedule is checked when it is declared, naming what is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from coplane.rules.deployment import Schedule


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ({"interval": "0s"}, "greater than"),
        ({"interval": 3.84e16}, "too long for a duration"),  # a fuzzer's seconds: no overflow
        ({"interval": "400d"}, "at most 366d"),
        ({}, "either `cron`"),
    ],
)
def test_a_schedule_out_of_bounds_is_refused(given: dict[str, object], refusal: str) -> None:
    with pytest.raises(ValidationError, match=refusal):
        Schedule.model_validate(given)


def test_a_year_long_interval_is_allowed() -> None:
    assert Schedule.model_validate({"interval": "366d"}).interval == timedelta(days=366)
