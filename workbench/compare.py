"""`python -m workbench.compare`: the command; its code lives in workbench.studies.ranking."""

from workbench.studies.ranking import main

if __name__ == "__main__":
    raise SystemExit(main())
