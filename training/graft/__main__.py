import sys

from training.graft.command import main

sys.exit(main())
