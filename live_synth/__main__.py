from live_synth.cli import main

raise SystemExit(main())
