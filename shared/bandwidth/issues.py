"""Problems met while reading logs: each names its file (and line), none stops the report.

Kinds: ``missing`` (a file, or a gap in a rotated set), ``unreadable`` (OSError), ``corrupt`` (not
JSON / not UTF-8 / too long), ``truncated`` (a last line cut short), ``invalid`` (JSON, but not a
version-1 record), ``newer_schema`` (a record from a newer writer), ``rotation`` (something seen
while following). So that one bad file cannot flood the report, only the first
:data:`DETAIL_LIMIT` issues of each kind per file are kept; the rest are counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal

IssueKind = Literal["missing", "unreadable", "corrupt", "truncated", "invalid", "newer_schema", "rotation"]
DETAIL_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Issue:
    file: str
    line: int | None
    kind: IssueKind
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class IssueLog:
    """Every issue met so far (the first :data:`DETAIL_LIMIT` per file and kind in detail)."""

    def __init__(self, detail_limit: int = DETAIL_LIMIT) -> None:
        self.detail_limit = detail_limit
        self.issues: list[Issue] = []
        self._per_file_kind: Counter[tuple[str, str]] = Counter()
        self.suppressed: Counter[tuple[str, str]] = Counter()

    def add(self, file: str, line: int | None, kind: IssueKind, message: str) -> None:
        key = (file, kind)
        self._per_file_kind[key] += 1
        if self._per_file_kind[key] > self.detail_limit:
            self.suppressed[key] += 1
        else:
            self.issues.append(Issue(file, line, kind, message))

    @property
    def total(self) -> int:
        return len(self.issues) + sum(self.suppressed.values())

    def suppressed_lines(self) -> list[str]:
        items = sorted(self.suppressed.items())
        return [f"{file}: {n:,d} more '{kind}' issues not listed" for (file, kind), n in items]

    def to_json(self) -> dict[str, object]:
        return {
            "issues": [i.to_json() for i in self.issues],
            "issues_suppressed": [
                {"file": file, "kind": kind, "count": n} for (file, kind), n in sorted(self.suppressed.items())
            ],
            "issues_total": self.total,
        }
