"""One chaos case's outcome, and how a part's cases add up into its :class:`ChaosCounts`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.chaos.report import ChaosCounts


@dataclass(slots=True)
class CaseResult:
    name: str
    sent: int = 0  # messages queued or sent that the case expects to be acknowledged
    acked: int = 0  # of those, acknowledged by the gateway
    lost: int = 0  # acknowledged, then missing at the gateway (or neither delivered nor superseded)
    duplicated: int = 0  # stored twice, or an acknowledged rid executed again
    max_rss_mb: float = 0.0
    skipped: str = ""  # why the case could not run here (e.g. mounting a tmpfs is not permitted)
    problems: list[str] = field(default_factory=list)  # behaviour that is wrong even if nothing was lost
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.skipped and not self.problems and self.lost == 0 and self.duplicated == 0

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


def counts(cases: Sequence[CaseResult]) -> ChaosCounts:
    total = ChaosCounts()
    for case in cases:
        total.sent += case.sent
        total.acked += case.acked
        total.lost += case.lost
        total.duplicated += case.duplicated
        total.max_rss_mb = max(total.max_rss_mb, case.max_rss_mb)
    total.details["cases"] = {c.name: {**asdict(c), "passed": c.passed} for c in cases}
    return total
