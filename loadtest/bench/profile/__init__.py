"""scripts/profile-http: where one hbfork worker's CPU goes (`http`), the function-to-category
map and profiler-cost correction (`attrib`), and the `hbfork run` whose workers take SIGPROF to
start and stop cProfile (`worker`)."""
