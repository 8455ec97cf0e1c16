"""Reading Apache httpd: its config syntax, Include following, and `hbfork import-apache`'s
translation of a heartbeat front into hbfork's TOML.

May import `hbfork.core`.
"""
