"""How the scripts end on a user's mistake: the message on stderr and a non-zero exit status, no traceback.

A user error is what the scripts raise about their input: a data file in a wrong format (`DataFormatError`, a
ValueError), an option with a wrong value (ValueError), a path that does not exist or cannot be read or written
(OSError: FileNotFoundError, PermissionError, transformers' "not a model folder"). Anything else is a bug and keeps
its traceback. `--traceback` on any script's command line (taken off before the script parses its arguments, so
it works for run_ner.py, whose `--debug` is TrainingArguments', and under `accelerate launch`), or
BERTCRF_TRACEBACK=1 in the environment, shows the traceback of user errors too.

    if __name__ == "__main__":
        cli.run(main)
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable


TRACEBACK_VARIABLE = "BERTCRF_TRACEBACK"
TRACEBACK_FLAG = "--traceback"
USER_ERRORS = (ValueError, OSError)
# argparse's status is 2 for a bad command line; 1 is an error found while running.
EXIT_STATUS = 1


def traceback_wanted() -> bool:
    return os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def run(main: Callable[..., Any], *args: Any) -> Any:
    """Call a script's `main(*args)` and return its result; a user error (see the module docstring) is printed as
    `<script>: error: <message>` on stderr and ends the process with status 1, with its traceback only when
    --traceback is on the command line or BERTCRF_TRACEBACK is set."""
    if TRACEBACK_FLAG in sys.argv[1:]:
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != TRACEBACK_FLAG)]
        os.environ[TRACEBACK_VARIABLE] = "1"
    try:
        return main(*args)
    except USER_ERRORS as error:
        if traceback_wanted():
            raise
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "error"
        message = str(error) or type(error).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        print(f"(add {TRACEBACK_FLAG} or set {TRACEBACK_VARIABLE}=1 for the traceback)", file=sys.stderr)
        sys.stderr.flush()
        raise SystemExit(EXIT_STATUS) from None
