from vision_committee.cli import main

raise SystemExit(main())
