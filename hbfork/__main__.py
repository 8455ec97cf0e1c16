from hbfork.cli import main

raise SystemExit(main())
