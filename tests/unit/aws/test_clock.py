"""AWS's clock from the Date of its answers: never later than AWS's, whichever clock is wrong."""

from __future__ import annotations

from email.utils import formatdate

from hypothesis import given
from hypothesis import strategies as st

from consumer.aws.clock import AwsClock


class Clocks:
    """The host's wall clock (possibly wrong) and monotonic clock, and AWS's true time."""

    def __init__(self, aws: float, host_ahead: float) -> None:
        self.aws = aws
        self.host_ahead = host_ahead
        self.mono = 500.0

    def wall(self) -> float:
        return self.aws + self.host_ahead

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.aws += seconds
        self.mono += seconds


@given(
    start=st.floats(1.7e9, 1.8e9),
    host_ahead=st.floats(-3600, 3600),
    latencies=st.lists(st.floats(0, 2), min_size=1, max_size=5),
    margin=st.floats(0, 5),
)
def test_a_read_time_is_never_later_than_aws_clock(start, host_ahead, latencies, margin):
    # GIVEN a host clock off by up to an hour, and answers whose Date is AWS's second at answering
    clocks = Clocks(start, host_ahead)
    clock = AwsClock(wall=clocks.wall, monotonic=clocks.monotonic)
    for latency in latencies:
        began_aws, began = clocks.aws, clocks.mono
        clocks.advance(latency / 2)
        date = formatdate(int(clocks.aws), usegmt=True)  # AWS answers mid-flight, second rounded down
        clocks.advance(latency / 2)
        clock.observe(date)

        # WHEN the read's time is asked once its answer is in
        read_at = clock.read_time(margin, began)

        # THEN it is no later than AWS's clock when the read began
        assert read_at <= began_aws + 1e-6


def test_a_host_ahead_is_measured_and_corrected():
    clocks = Clocks(1_800_000_000.0, host_ahead=30.0)
    clock = AwsClock(wall=clocks.wall, monotonic=clocks.monotonic)
    assert clock.read_time(1.0) == clocks.wall() - 1.0  # no answer yet: only the host's clock
    clock.observe(formatdate(int(clocks.aws), usegmt=True))
    assert abs(clock.host_ahead_seconds - 30.0) <= 1.0
    assert clock.read_time(1.0) <= clocks.aws


def test_what_is_no_date_is_ignored():
    clock = AwsClock()
    clock.observe("not a date")
    clock.observe(None)
    assert clock.now_lower() is None and clock.host_ahead_seconds is None
