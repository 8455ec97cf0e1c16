"""scripts/bench: hbfork against Apache, nginx and HAProxy in interleaved rounds (`main`),
where its backends live (`topology`), one measured run (`measure`) and the phases after the
rounds (`phases`). Its report is in `report.suite`."""
