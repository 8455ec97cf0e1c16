"""Reports: BENCHMARKS.md sections and charts from raw results. `suite`, `suite_extras`,
`table` and `chart` for scripts/bench; `balance` and `overload` for their scripts. Pure
functions of the results (files are written through `markdown`), so they can be regenerated
with `--report-only`."""
