import sys

from ganctl.cli import main

sys.exit(main())
