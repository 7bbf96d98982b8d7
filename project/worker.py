"""A Celery worker started without Celery's command line: `python -m project.worker -Q QUEUES`.

The livefeed worker line of the Procfile and compose.yaml runs this. It starts the same
worker (`app.Worker(...).start()`, what `celery -A project worker` ends up calling), with the
options a Chorus worker line uses, but without importing Celery's command line: click and
its plugins, and click-repl with prompt_toolkit, pygments and wcwidth, which `celery.bin`
loads before it reads an option (about 200 modules and 8 MB of every such process; see
docs/benchmarks.md, "worker RSS"). `celery -A project inspect ...` and the other commands
work on these workers as on any other.

Options (the same names as Celery's): -Q/--queues, -P/--pool, -c/--concurrency,
-n/--hostname, -l/--loglevel, --without-gossip, --without-mingle, --without-heartbeat.
"""

from __future__ import annotations

import argparse
import sys

POOLS = ("solo", "prefork", "threads")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m project.worker",
                                     description="Start a Chorus Celery worker without Celery's command line.")
    parser.add_argument("-Q", "--queues", default="celery",
                        help="comma-separated queues to consume (default: celery)")
    parser.add_argument("-P", "--pool", choices=POOLS, default="prefork", help="pool (default: prefork)")
    parser.add_argument("-c", "--concurrency", type=int, default=None,
                        help="processes or threads in the pool (default: the number of cores)")
    parser.add_argument("-n", "--hostname", default=None, help="node name, %%h the host (default: celery@%%h)")
    parser.add_argument("-l", "--loglevel", type=str.upper, choices=LEVELS, default="INFO")
    for feature in ("gossip", "mingle", "heartbeat"):
        parser.add_argument(f"--without-{feature}", action="store_true", help=f"turn worker {feature} off")
    args = parser.parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("argument -c/--concurrency: must be at least 1")
    args.queues = [queue.strip() for queue in args.queues.split(",") if queue.strip()]
    if not args.queues:
        parser.error("argument -Q/--queues: name at least one queue")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from celery.utils.nodenames import default_nodename, host_format

    from project.celery import app, process_starting

    process_starting()
    app.loader.import_default_modules()  # as Celery's command line does before it starts a worker
    options = {"queues": args.queues, "pool_cls": args.pool, "loglevel": args.loglevel,
               "hostname": host_format(default_nodename(args.hostname)),
               "without_gossip": args.without_gossip, "without_mingle": args.without_mingle,
               "without_heartbeat": args.without_heartbeat}
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    worker = app.Worker(**options)
    worker.start()
    return worker.exitcode or 0


if __name__ == "__main__":
    sys.exit(main())
