"""The single-question benchmarks, one module per script: `http` (bench-http), `tls`,
`routes`, `tcp`, `bodies`, `conns` on loopback; `balance` and `overload` in the netns lab, with
their runs and figures in `runs`. Each module's `main(argv)` is its script."""
