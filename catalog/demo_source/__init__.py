"""The demo Douban: a small local server that speaks movie.douban.com's protocol, with
made-up films and series, so that `make run` on a machine with no internet syncs a real
catalog through the real Douban client.

    pages.py     Douban's markup, built (shared with the tests' fake Douban)
"""
