from mem1_gym.cli import main

raise SystemExit(main())
