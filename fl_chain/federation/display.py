"""What ``flchain simulate`` shows while it runs: a live progress bar per round, one line per
finished round and a final table. On a terminal the bar is live; in a log file only the lines and
the table appear."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


class SimulationDisplay:
    """Progress of a simulation: ``start``, then ``phase``/``round_done`` while it runs, ``finish``."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.quiet = quiet
        self._progress: Progress | None = None
        self._bar: Any = None

    def start(self, description: str, rounds: int) -> None:
        """Show the run's description and a bar over its ``rounds``."""
        if self.quiet:
            return
        self.console.print(description)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]rounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._bar = self._progress.add_task("setting up", total=rounds)

    def message(self, text: str) -> None:
        """One line above the bar (setup steps, the comparison)."""
        if not self.quiet:
            self.console.print(text)

    def phase(self, text: str) -> None:
        """What the current round is doing (``round 3: 5/8 updates``)."""
        if self._progress is not None:
            self._progress.update(self._bar, description=text)

    def round_done(self, record: Any, finalized_rounds: int) -> None:
        """One line for a finished round; the bar counts finalized rounds."""
        if self.quiet:
            return
        if record.status == "finalized":
            shown = f"accuracy {record.test_accuracy:.4f}" if record.test_accuracy is not None else "finalized"
            if getattr(record, "epsilon", None) is not None:
                shown += f"  eps {record.epsilon:.4g}"
        else:
            shown = "failed; retried as a new round"
        self.console.print(
            f"round {record.round:>3}: {record.status:<9} {record.contributors:>3} contributors  {shown}  "
            f"gas {record.gas_used:,}  moved {record.bytes_moved / 1e6:.1f} MB  {record.wall_seconds:.1f} s"
        )
        if self._progress is not None:
            self._progress.update(self._bar, completed=finalized_rounds)

    def stop(self) -> None:
        """Remove the live bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def finish(self, summary: dict[str, Any], out: str) -> None:
        """The final table: one row per round, then the totals and the run folder."""
        self.stop()
        if self.quiet:
            return
        table = Table(title="fl-chain simulation", title_justify="left")
        for name, justify in (
            ("round", "right"),
            ("status", "left"),
            ("updates", "right"),
            ("accuracy", "right"),
            ("gas", "right"),
            ("MB moved", "right"),
            ("seconds", "right"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in summary["rounds"]:
            accuracy = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-"
            table.add_row(
                str(r["round"]),
                r["status"],
                str(r["contributors"]),
                accuracy,
                f"{r['gas_used']:,}",
                f"{r['bytes_moved'] / 1e6:.1f}",
                f"{r['wall_seconds']:.1f}",
            )
        self.console.print(table)
        for line in summary_lines(summary, out):
            self.console.print(line)


def privacy_line(privacy: dict[str, Any]) -> str:
    """``differential privacy: eps=... at delta=...`` and, if the budget ended the task, that it did."""
    line = (
        f"differential privacy: eps={privacy['epsilon']:.4g} at delta={privacy['delta']:g} after "
        f"{privacy['finalized_rounds']} finalized rounds (noise multiplier {privacy['noise_multiplier']:g}, "
        f"clip norm {privacy['clip_norm']:g})"
    )
    if privacy["stopped"]:
        line += f"; stopped: {privacy['stopped']}"
    return line


def summary_lines(summary: dict[str, Any], out: str) -> Sequence[str]:
    """The closing lines: final accuracy, baselines if any, totals and where the files are."""
    lines = []
    final = summary["final_accuracy"]
    lines.append(f"final test accuracy: {final:.4f}" if final is not None else "no round finalized")
    privacy = summary.get("privacy")
    if privacy is not None:
        lines.append(privacy_line(privacy))
    reference = summary.get("reference")
    if reference is not None:
        if reference.get("comparable"):
            verdict = "byte-identical" if reference["final_identical"] else "DIFFERENT"
            lines.append(
                f"central FedAvg reference (same clients, one process): final model {verdict}, "
                f"{reference['rounds_identical']}/{reference['rounds_compared']} rounds identical, "
                f"accuracy {reference['final_accuracy']:.4f}"
            )
        else:
            lines.append(f"central FedAvg reference: not compared ({reference['reason']})")
    pooled = summary.get("pooled")
    if pooled is not None:
        lines.append(
            f"centralized model on pooled data ({pooled['epochs']} epochs): accuracy {pooled['test_accuracy']:.4f}"
        )
    lines.append(
        f"total gas {summary['total_gas']:,}, moved {summary['total_bytes_moved'] / 1e6:.1f} MB, "
        f"{summary['wall_seconds']:.1f} s; results in {out}"
    )
    return lines
