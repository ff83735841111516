"""`python -m workbench.compare`: the command; its code lives in workbench.studies.compare."""

from workbench.studies.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
