from globscope.cli import main

raise SystemExit(main())
