"""The training loss of every step, kept in bounded space for the checkpoint and `inspect`'s chart:
consecutive steps are averaged in buckets whose width doubles whenever the points fill up."""

from __future__ import annotations

MAX_POINTS = 512


class LossCurve:
    """Points (last step of the bucket, mean loss over it), every bucket `stride` steps wide, and the
    bucket being filled: (sum, count, last step)."""

    def __init__(self, stride: int = 1, points=None, pending=None):
        self.stride = stride
        self.points: list[list] = [list(p) for p in points or []]
        self.sum, self.count, self.last = pending or (0.0, 0, 0)

    def add(self, step: int, loss: float) -> None:
        self.sum, self.count, self.last = self.sum + loss, self.count + 1, step
        if self.count < self.stride:
            return
        self.points.append([step, self.sum / self.count])
        self.sum, self.count = 0.0, 0
        if len(self.points) >= MAX_POINTS:  # halve: each pair of buckets becomes one twice as wide
            pairs = zip(self.points[0::2], self.points[1::2])
            self.points = [[b[0], (a[1] + b[1]) / 2] for a, b in pairs]
            self.stride *= 2

    def all_points(self) -> list[list]:
        """The points, and the bucket being filled as one more."""
        return self.points + ([[self.last, self.sum / self.count]] if self.count else [])

    def to_json(self) -> dict:
        return {"stride": self.stride, "points": self.points, "pending": [self.sum, self.count, self.last]}

    @classmethod
    def from_json(cls, data: dict | None) -> "LossCurve":
        """A curve from a checkpoint (validate.py has checked it), or an empty one for files without."""
        return cls() if data is None else cls(data["stride"], data["points"], tuple(data["pending"]))
