"""The demo content of the whole site, loaded by `manage.py load_demo` (make run does).

It lives above the apps because it uses several of them in order: the demo user (accounts),
the demo tracks (catalog.demo), that user's listening history (scrobbling.demo) and a live
channel on the local simulator (livefeed.demo). No app imports another app's demo.
"""
