"""`ganctl report RUN|SWEEP [--out report.html]`: one self-contained HTML page of a run or a sweep, to
open in any browser, offline, after `scp` or as a CI artifact.

    runs    what a run directory holds, read back from the files runs write
    build   the pages: a run's sections, a sweep's table and jobs
    charts  line charts as inline SVG
    page    the HTML itself: embedded pictures, style, the page's own few lines of script
    walk    a latent walk drawn from the newest checkpoint (the only part that runs G)
    search  an Optuna sweep's history and parameter importances

The heavy imports (torch, tensorboard, Hydra's composition) load after the arguments are parsed:
`ganctl report --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganctl.errors import GanctlError

REPORT_FILE = "report.html"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl report", description="Write one self-contained HTML page of a run or a sweep (pictures inside it, "
                                          "no network request): open it in any browser.",
        epilog="examples:\n  ganctl report outputs/2026-11-22/12-00-00\n  ganctl report multirun/2026-11-22/12-00-00 --out sweep.html",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a run directory (ganctl train's), or a sweep directory (ganctl train -m's)")
    parser.add_argument("--out", help=f"the HTML file (default <dir>/{REPORT_FILE})")
    parser.add_argument("--no-walk", dest="walk", action="store_false",
                        help="a run: leave out the latent walk (the only part that loads G from the checkpoint)")
    return parser


def is_sweep(path: Path) -> bool:
    from ganctl import sweep

    return not (path / ".hydra").is_dir() and ((path / sweep.SWEEP_FILE).is_file() or (path / "multirun.yaml").is_file())


def report(path: str | Path, out: str | Path | None = None, walk: bool = True) -> Path:
    """Write the report of the run or sweep at `path` to `out` (default <path>/report.html)."""
    from ganctl.console import console
    from ganctl.report.build import run_report, sweep_report

    path = Path(path).expanduser()
    if not path.is_dir():
        raise GanctlError(f"{path} is not a directory: pass a run directory (ganctl train's hydra.run.dir) or a sweep directory.")
    out = Path(out) if out else path / REPORT_FILE
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / REPORT_FILE}.")
    sweep = is_sweep(path)
    html = sweep_report(path) if sweep else run_report(path, walk)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    size = out.stat().st_size
    console.print(f"Wrote the report of the {'sweep' if sweep else 'run'} {path} to {out} ({size / 1e6:.1f} MB)")
    return out


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)
    report(options.path, options.out, options.walk)
    return 0
