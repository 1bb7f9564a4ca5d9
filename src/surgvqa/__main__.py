from surgvqa.cli import main

raise SystemExit(main())
