"""hbfork.proxy.http.spool_file: one response's nameless spool file — bytes out in the order
they went in (read or sendfile), emptied and given back to the budget once all are taken, a
failed write kept in memory after the file's bytes, nothing left in the directory."""

from __future__ import annotations

import os
import socket

import pytest

from hbfork.proxy.http import spool_file
from hbfork.proxy.http.spool_file import BUDGET, SpoolFile


@pytest.fixture(autouse=True)
def _budget():
    BUDGET.used = 0
    yield
    assert BUDGET.used == 0  # every test closes its files: the worker's budget is whole again


def test_written_then_read_in_order_and_emptied(tmp_path):
    spool = SpoolFile(str(tmp_path))
    assert spool.opened() and os.listdir(tmp_path) == []  # no name in the directory
    spool.write(b"abc")
    spool.write(memoryview(b"defgh")[1:])
    assert spool.pending == 7 and BUDGET.used == 7
    assert spool.read(4) == b"abce" and spool.pending == 3
    assert spool.read(100) == b"fgh"
    assert spool.pending == 0 and BUDGET.used == 0  # emptied: its bytes given back
    assert os.fstat(spool.fd).st_size == 0
    spool.write(b"xy")
    assert spool.written == 9  # the response's cap counts every byte it ever took
    spool.close()
    assert spool.fd == -1


def test_sendfile_to_a_socket(tmp_path):
    spool = SpoolFile(str(tmp_path))
    assert spool.opened()
    data = os.urandom(200_000)
    spool.write(data)
    left, right = socket.socketpair()
    left.setblocking(False)
    got = bytearray()
    try:
        while spool.pending:
            spool.sendfile(left)
            got += right.recv(1 << 20)
        assert bytes(got) == data
    finally:
        left.close()
        right.close()
        spool.close()


def test_a_failed_write_keeps_its_bytes_after_the_files(tmp_path, monkeypatch):
    spool = SpoolFile(str(tmp_path))
    assert spool.opened()
    spool.write(b"12345")

    def full(fd, data, offset):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(spool_file.os, "pwrite", full)
    spool.write(b"678")
    assert spool.broken and spool.pending == 8
    spool.write(b"9")  # it takes nothing more in the file
    assert spool.read(100) == b"12345" and spool.read(100) == b"6789"
    assert spool.pending == 0
    spool.close()


def test_a_directory_that_cannot_be_opened_takes_nothing(tmp_path):
    spool = SpoolFile(str(tmp_path / "missing"))
    assert not spool.opened() and spool.broken
    spool.close()


def test_without_o_tmpfile_the_file_is_unlinked_at_once(tmp_path, monkeypatch):
    monkeypatch.delattr(spool_file.os, "O_TMPFILE", raising=False)
    fd = spool_file.open_nameless(str(tmp_path))
    try:
        assert os.listdir(tmp_path) == [] and os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
