import sys

from bot.cli import main

if __name__ == "__main__":  # worker processes import this module again; only the real start runs the CLI
    sys.exit(main())
