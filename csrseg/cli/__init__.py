"""The ``csrseg`` command: a thin shell over the package's functions.

``csrseg VERB [options] [--set key.sub=value ...]``; every verb's ``--help`` lists
its options. Errors in the user's input print one line and exit with status 2.
"""

from __future__ import annotations

import logging
import sys

from csrseg.cli.errors import error_line, os_error_text, out_of_memory_text
from csrseg.cli.parser import build_parser
from csrseg.engine.preempt import TrainingInterrupted
from csrseg.errors import CsrsegError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        args.func(args)
    except TrainingInterrupted as exc:  # preempted: last.pt is written, exit as if killed by the signal
        _close_progress_bars()
        print(f"csrseg: {exc}", file=sys.stderr)
        return exc.exit_code
    except CsrsegError as exc:
        _close_progress_bars()
        print(f"csrseg: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: an --out that is a file, a read-only folder, a full disk
        _close_progress_bars()
        print(f"csrseg: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # only running out of memory is the user's to fix; a bug shows whole
        text = out_of_memory_text(exc)
        if text is None:
            raise
        _close_progress_bars()
        print(f"csrseg: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("csrseg: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()
    return 0


def _configure_logging(verbose: bool) -> None:
    """csrseg's own lines at INFO; the libraries' INFO lines (onnxruntime's quantizer notes every bias it
    copies, through the root logger) only with -v, everything at DEBUG."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("csrseg").setLevel(logging.DEBUG if verbose else logging.INFO)


def _close_progress_bars() -> None:
    """End a progress bar an error cut short, so the error starts a line of its own."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()


def _leave_process_group() -> None:
    """Under torchrun: leave the process group (nccl warns at exit about one left open)."""
    if "torch" in sys.modules:
        from csrseg.engine.distributed import cleanup

        cleanup()
