"""The programs compared: config text for hbfork, nginx, HAProxy and Apache httpd as fronts
and as backends (`configs`), their launch and readiness (`servers`), and the members and fronts
of the balancing and overload labs (`fronts`). May import `procs` and `kinds`."""
