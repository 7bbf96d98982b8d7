"""The demo Douban: a small local server that speaks movie.douban.com's protocol (the newest
list as JSON, subject pages as HTML, cover images) with made-up films and series, so that
`make run` on a machine with no internet syncs a real catalog through the real Douban client.

    pages.py     Douban's markup, built (shared with the tests' fake Douban)
    content.py   the made-up titles and people, the same on every machine (seeded)
    covers.py    each title's cover, drawn as a PNG
    server.py    the HTTP server (`DemoDouban`; `manage.py catalog_demo_server` runs it)

The routes are in docs/protocol.md ("The demo Douban").
"""
