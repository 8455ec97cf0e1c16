"""The shared-memory member table: its layout, the master's seqlocked writes, and the readers
(workers, `hbfork status`). The master is the only writer of member data; each worker writes
only its own record.

May import `hbfork.core`.
"""
