"""scripts/simulate: a discrete-event simulation of many fronts over 1,000 members using
hbfork's own pick code (`model`), and its driver, plot and report section (`main`)."""
