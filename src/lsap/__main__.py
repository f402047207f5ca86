from lsap.cli import main

raise SystemExit(main())
