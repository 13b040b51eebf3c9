"""python -m model.train: the command line in model/train/cli.py."""

from model.train.cli import main

raise SystemExit(main())
