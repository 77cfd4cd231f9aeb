"""`python -m ganprint.cli` (also for `torchrun -m ganprint.cli`)."""

from ganprint.cli import main

if __name__ == "__main__":
    main()
