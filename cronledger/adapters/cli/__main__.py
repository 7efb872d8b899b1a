import sys

from cronledger.adapters.cli.main import main

sys.exit(main())
