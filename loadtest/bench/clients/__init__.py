"""Load besides wrk: the open-loop generator (`openloop`, its own process), idle keep-alive
clients (`idle`) and the heartbeat blaster (`blast`, its own process). Standard library only,
plus `procs` and `stats`."""
