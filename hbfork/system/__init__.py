"""Thin operating-system helpers shared by the master, the workers and the command line: the
error log, binding sockets, the pid file, dropping privileges, reading the key file and the
config file.

May import `hbfork.core`.
"""
