"""`python -m ganprint`."""

from ganprint.cli import main

if __name__ == "__main__":
    main()
