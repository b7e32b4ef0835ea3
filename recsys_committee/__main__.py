from recsys_committee.cli import main

raise SystemExit(main())
