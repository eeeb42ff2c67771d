import sys

from training.train.command import main

sys.exit(main())
