import sys

from berth.runtime.main import main

sys.exit(main())
