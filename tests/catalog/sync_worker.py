"""A sync worker in its own process, for the tests that need real processes (a shared rate
limit, a worker killed with -9):

    python -m tests.catalog.sync_worker RUN_ID

It runs `sync_execute(run_id=RUN_ID)` as a Celery worker would, with the settings of its
environment (tests.live._server_env: the test database, Redis, the fake's address).
`MirrorDouban` is a second source speaking Douban's protocol (to the same host, so through the
same limiter key), for two runs at once: a source has one run in flight at most.
"""

from __future__ import annotations

import sys

from catalog.clients.douban import DoubanClient


class MirrorDouban(DoubanClient):
    name = "douban_mirror"
    label = "Douban (mirror)"

    def details(self, source_id: str, *, kind: str):
        details = super().details(source_id, kind=kind)
        details.source = self.name  # its own external ids: titles meet by IMDb id only
        return details


def main(run_id: int) -> None:
    import django

    django.setup()
    from catalog import sync
    from catalog.clients import registry

    if "douban_mirror" not in registry:
        registry.register(MirrorDouban)
    run = sync.sync_execute(run_id=run_id)
    print(f"run {run.pk} {run.state} done={run.done}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
