from hbfork.cli.main import main

raise SystemExit(main())
