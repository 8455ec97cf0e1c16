"""The worker process: an epoll loop that accepts client connections and relays them to members,
and the sessions it runs (HTTP per request, TCP per connection), the keep-alive pool of member
connections, upstream picks and connect failover. Sessions see the worker only through the small
interface in `proxy.context`.

May import `hbfork.core`, `hbfork.table`, `hbfork.system` and `hbfork.ops`; never
`hbfork.master`.
"""
