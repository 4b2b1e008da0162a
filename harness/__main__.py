"""`python -m vireid.harness` is the same as the `vireid` console script."""
from vireid.harness.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
