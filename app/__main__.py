"""`python -m app`: the reference service's command line, which is the framework's own."""

import sys

from dbos_publishers.ops import main

if sys.argv[1:2] in (["scenario"], ["bench"]):  # the lab left the package: say where it went
    # The command only, never its arguments: a --postgres-url may carry a password.
    sys.stderr.write(
        f"error: the crash lab moved: run `python -m lab {sys.argv[1]}` with the same arguments\n"
    )
    raise SystemExit(2)
raise SystemExit(main(prog="python -m app"))
