"""The report as aligned text tables (thousands separators) or as one JSON document."""

from __future__ import annotations

from collections.abc import Sequence

from shared.bandwidth.issues import IssueLog
from shared.bandwidth.reader import FileStats
from shared.bandwidth.summary import Reconciliation, Summary, Totals
from shared.bandwidth.units import format_duration, format_ratio, format_ts, format_window

REPORT_VERSION = 1


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, text_columns: int = 1) -> list[str]:
    """Aligned columns, indented by two spaces: the first ``text_columns`` left-aligned, the rest
    (numbers; ints with thousands separators) right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        parts = [v.ljust(w) if i < text_columns else v.rjust(w) for i, (v, w) in pairs]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(r) for r in cells)]


def render_text(summary: Summary, files: Sequence[FileStats], issues: IssueLog) -> str:
    out: list[str] = []
    lines = sum(f.lines for f in files)
    plural = "s" if len(files) != 1 else ""
    head = f"bandwidth: {len(files)} file{plural}, {lines:,d} lines, {summary.messages:,d} messages"
    if summary.kernel_samples:
        head += f", {summary.kernel_samples:,d} kernel samples"
    out.append(head)
    if summary.first_ts is not None and summary.last_ts is not None:
        span = summary.last_ts - summary.first_ts
        out.append(
            f"  from {format_ts(summary.first_ts)} to {format_ts(summary.last_ts)} UTC ({format_duration(span)})"
        )
    if summary.since is not None:
        out.append(f"  since {format_ts(summary.since)} UTC ({summary.before_since:,d} earlier records not counted)")
    if summary.sides:
        out.append("  sides: " + ", ".join(f"{side} ({n:,d} records)" for side, n in sorted(summary.sides.items())))
    if len(summary.sides) > 1:
        out.append("  note: logs of both sides: a message both sides logged is counted once per side")
    if summary.messages:
        out.append("")
        out.append(f"messages by {', '.join(summary.by)} (bytes)")
        total = summary.total.frame or 1
        rows: list[list[object]] = [
            [*key, t.messages, t.payload, t.compressed, t.frame, f"{100 * t.frame / total:.1f}%"]
            for key, t in summary.groups()
        ]
        t = summary.total
        rows.append(["total", *([""] * (len(summary.by) - 1)), t.messages, t.payload, t.compressed, t.frame, "100.0%"])
        headers = [*summary.by, "messages", "payload", "compressed", "frame", "share"]
        out += table(headers, rows, text_columns=len(summary.by))
    windows, sparse = summary.windows()
    if windows and summary.window_s is not None:
        out.append("")
        note = " (empty windows left out)" if sparse else ""
        out.append(f"per {format_window(summary.window_s)} window{note} (bytes; frame/s over the whole window)")
        out += table(
            ["window start (UTC)", "messages", "payload", "compressed", "frame", "frame/s"],
            [[format_ts(w.start), *_totals(w.totals), f"{w.frame_per_s:,.1f}"] for w in windows],
        )
    recon = summary.reconciliation()
    if recon:
        out.append("")
        out.append("kernel TCP_INFO vs model (frame bytes + CURVE handshake per connection), per side and tenant")
        out += table(
            ["side", "tenant", "conns", "model in", "kernel in", "diff", "model out", "kernel out", "diff", "retrans"],
            [_recon_row(r) for r in recon],
            text_columns=2,
        )
        out.append("  (in: bytes_received, out: bytes_acked, both incl. SYN/FIN octets; '-': not sampled)")
    if issues.total:
        out.append("")
        out.append(f"issues ({issues.total:,d}; those lines were skipped, everything else is counted)")
        out += [f"  {issue}" for issue in issues.issues]
        out += [f"  {line}" for line in issues.suppressed_lines()]
    return "\n".join(out) + "\n"


def render_json(summary: Summary, files: Sequence[FileStats], issues: IssueLog) -> dict[str, object]:
    return {
        "report_version": REPORT_VERSION,
        "files": [f.to_json() for f in files],
        **summary.to_json(),
        **issues.to_json(),
    }


def _totals(t: Totals) -> list[object]:
    return [t.messages, t.payload, t.compressed, t.frame]


def _recon_row(r: Reconciliation) -> list[object]:
    k = r.kernel
    kernel: tuple[object, object, object] = ("-", "-", "-")
    if k is not None:
        kernel = (k.bytes_received, k.bytes_acked, "-" if k.bytes_retrans is None else k.bytes_retrans)
    kernel_in, kernel_out, retrans = kernel
    return [
        r.side, r.tenant, r.connections,
        r.model_in, kernel_in, format_ratio(r.diff_in),
        r.model_out, kernel_out, format_ratio(r.diff_out),
        retrans,
    ]  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)
