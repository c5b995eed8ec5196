from dbos_publishers.ops import main

raise SystemExit(main(prog="python -m dbos_publishers"))
